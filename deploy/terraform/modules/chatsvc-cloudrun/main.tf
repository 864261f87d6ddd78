# chatsvc on Cloud Run: a dedicated service account that may read its own secrets and
# nothing else, a job that migrates the ScyllaDB schema before each new image serves, and
# the public gateway service. settings.tf computes what goes into the containers.

locals {
  labels = merge({ app = "chatsvc", component = "gateway" }, var.labels)

  # Anything that changes what `chatsvc migrate` does; a new value runs the job once more.
  migration_token = substr(sha256(jsonencode({ image = var.image, scylla = var.scylla })), 0, 16)
}

resource "google_service_account" "chatsvc" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "chatsvc ${var.name} (Cloud Run)"
  description  = "Runtime identity of the ${var.name} Cloud Run service and its migration job. Holds no project roles: only secretAccessor on the secrets it mounts."
}

# Per secret, not project-wide: the service account can read exactly the secrets the
# containers reference. Logs and metrics need no role (Cloud Run collects stdout itself).
resource "google_secret_manager_secret_iam_member" "chatsvc" {
  for_each = local.secret_ids

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.chatsvc.member
}

# `chatsvc migrate` (CREATE ... IF NOT EXISTS, idempotent) with the service's image and
# settings. run_execution_token makes apply start an execution and wait for it to succeed
# whenever the image or the ScyllaDB settings change; the service depends on this job, so a
# new revision never serves before its schema exists.
resource "google_cloud_run_v2_job" "migrate" {
  project             = var.project_id
  name                = "${var.name}-migrate"
  location            = var.region
  labels              = merge(local.labels, { component = "migrate" })
  deletion_protection = var.deletion_protection
  run_execution_token = local.migration_token

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account       = google_service_account.chatsvc.email
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
      timeout               = "600s"
      max_retries           = 3

      vpc_access {
        connector = var.vpc.connector
        egress    = var.vpc.egress

        dynamic "network_interfaces" {
          for_each = var.vpc.subnetwork == null ? [] : [var.vpc]
          content {
            network    = network_interfaces.value.network
            subnetwork = network_interfaces.value.subnetwork
            tags       = network_interfaces.value.network_tags
          }
        }
      }

      containers {
        name    = "migrate"
        image   = var.image
        command = ["chatsvc"]
        args    = ["migrate"]

        dynamic "env" {
          for_each = local.plain_env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        dynamic "volume_mounts" {
          for_each = local.secret_files
          content {
            name       = volume_mounts.value.dir
            mount_path = volume_mounts.value.mount_path
          }
        }
      }

      dynamic "volumes" {
        for_each = local.secret_files
        content {
          name = volumes.value.dir
          secret {
            secret = volumes.value.secret
            items {
              version = volumes.value.version
              path    = volumes.value.file
            }
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.chatsvc]
}

resource "google_cloud_run_v2_service" "chatsvc" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  description         = "chatsvc real-time chat gateway (Socket.IO over websockets and long-polling)"
  ingress             = var.ingress
  labels              = local.labels
  deletion_protection = var.deletion_protection

  template {
    service_account       = google_service_account.chatsvc.email
    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
    labels                = local.labels

    # A websocket is one request: it lives at most this long, then the client reconnects.
    timeout = "${local.request_timeout_seconds}s"
    # Long-polling sends each Engine.IO session's requests to one instance; without the
    # affinity cookie the handshake lands on one instance and the next poll on another.
    session_affinity = true
    # Sockets per instance (each open websocket holds one request slot).
    max_instance_request_concurrency = var.concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    # Kafka and ScyllaDB on private addresses: Direct VPC egress or a connector.
    vpc_access {
      connector = var.vpc.connector
      egress    = var.vpc.egress

      dynamic "network_interfaces" {
        for_each = var.vpc.subnetwork == null ? [] : [var.vpc]
        content {
          network    = network_interfaces.value.network
          subnetwork = network_interfaces.value.subnetwork
          tags       = network_interfaces.value.network_tags
        }
      }
    }

    containers {
      name    = "chatsvc"
      image   = var.image
      command = ["chatsvc"]
      args    = ["serve"]

      # The only port Cloud Run exposes. The gRPC admin port is not listed (and the admin
      # server is off: CHATSVC_GRPC_ENABLED=false in settings.tf).
      ports {
        name           = "http1"
        container_port = local.container_port
      }

      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU stays allocated between requests: the Kafka consumer, the cluster heartbeat
        # and Engine.IO pings run while no request is "active" in Cloud Run's sense.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      startup_probe {
        http_get {
          path = local.probes.startup.path
          port = local.container_port
        }
        period_seconds    = local.probes.startup.period_seconds
        timeout_seconds   = local.probes.startup.timeout_seconds
        failure_threshold = local.probes.startup.failure_threshold
      }

      liveness_probe {
        http_get {
          path = local.probes.liveness.path
          port = local.container_port
        }
        period_seconds    = local.probes.liveness.period_seconds
        timeout_seconds   = local.probes.liveness.timeout_seconds
        failure_threshold = local.probes.liveness.failure_threshold
      }

      dynamic "volume_mounts" {
        for_each = local.secret_files
        content {
          name       = volume_mounts.value.dir
          mount_path = volume_mounts.value.mount_path
        }
      }
    }

    # One secret per volume (Cloud Run's rule); files are 0444 by default, which the
    # image's non-root user needs to read them.
    dynamic "volumes" {
      for_each = local.secret_files
      content {
        name = volumes.value.dir
        secret {
          secret = volumes.value.secret
          items {
            version = volumes.value.version
            path    = volumes.value.file
          }
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  depends_on = [google_cloud_run_v2_job.migrate, google_secret_manager_secret_iam_member.chatsvc]
}

# Browsers cannot present Google identity tokens; chatsvc authenticates every socket itself.
resource "google_cloud_run_v2_service_iam_member" "public" {
  #checkov:skip=CKV2_CHATSVC_3:A public chat gateway: browsers cannot present Google identity tokens, and chatsvc authenticates every socket with its own JWT. Off with allow_unauthenticated = false.
  count = var.allow_unauthenticated ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.chatsvc.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Optional custom domain with a Google-managed certificate (the domain must be verified in
# the project; DNS records to create are in the dns_records output).
resource "google_cloud_run_domain_mapping" "chatsvc" {
  count = var.custom_domain == null ? 0 : 1

  project  = var.project_id
  location = var.region
  name     = var.custom_domain

  metadata {
    namespace = var.project_id
    labels    = local.labels
  }

  spec {
    route_name = google_cloud_run_v2_service.chatsvc.name
  }
}
