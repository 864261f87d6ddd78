# chatsvc in production on Cloud Run, the Cloud Run counterpart of k8s/overlays/production:
# Kafka over mutual TLS and ScyllaDB on the VPC, secrets from Secret Manager (created
# beforehand: deploy/terraform/README.md lists the gcloud commands).

module "chatsvc" {
  source = "../../modules/chatsvc-cloudrun"

  project_id    = var.project_id
  region        = var.region
  image         = var.image
  custom_domain = var.custom_domain

  min_instances = 2
  max_instances = 20
  concurrency   = 1000
  cpu           = "1"
  memory        = "1Gi"

  cors_origins = ["https://www.st00ck.example"]

  # Direct VPC egress into the subnet that can reach Kafka and ScyllaDB; the tag is what
  # the firewall rules for ports 9093 and 9042 match.
  vpc = {
    network      = "chat"
    subnetwork   = "chat-run"
    network_tags = ["chatsvc"]
  }

  jwt = {
    secret = "chatsvc-jwt-secret"
  }

  kafka = {
    brokers = ["kafka-0.chat.internal:9093", "kafka-1.chat.internal:9093", "kafka-2.chat.internal:9093"]
    topic   = "chatsvc.fanout"
    tls = {
      ca_cert_secret     = "chatsvc-kafka-ca"
      client_cert_secret = "chatsvc-kafka-client-cert"
      client_key_secret  = "chatsvc-kafka-client-key"
    }
  }

  scylla = {
    contact_points = ["scylla-0.chat.internal", "scylla-1.chat.internal", "scylla-2.chat.internal"]
    local_dc       = "dc1"
    replication    = "NetworkTopologyStrategy:dc1=3"
    consistency    = "LOCAL_QUORUM"
    credentials = {
      username_secret = "chatsvc-scylla-username"
      password_secret = "chatsvc-scylla-password"
    }
  }
}
