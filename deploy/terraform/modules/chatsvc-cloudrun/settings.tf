# What chatsvc is told, and the numbers the service is sized from: locals computed from the
# variables, and the rules across variables; nothing from the google provider. main.tf turns
# them into the Cloud Run service and the migration job; tests/deploy/test_terraform.py
# evaluates this file (with variables.tf) in OpenTofu alone and checks the result against
# chatsvc/settings/.

locals {
  # The one port Cloud Run routes to (HTTP/1.1: websockets and long-polling).
  container_port = 8080

  # Cloud Run's maximum request timeout, and so the longest a websocket lives: clients
  # reconnect after it (socket.io-client does so by itself) and catch up.
  request_timeout_seconds = 3600

  # Cloud Run sends SIGTERM, then SIGKILL this many seconds later; not configurable.
  sigterm_grace_seconds = 10

  # Startup: traffic only once Kafka and ScyllaDB are connected (/readyz is 503 before),
  # for up to 60 s. Liveness: the process answers at all.
  probes = {
    startup  = { path = "/readyz", period_seconds = 2, timeout_seconds = 2, failure_threshold = 30 }
    liveness = { path = "/healthz", period_seconds = 10, timeout_seconds = 3, failure_threshold = 3 }
  }

  # Where secret files are mounted. Cloud Run mounts one secret per directory, so each file
  # gets a directory of its own.
  secret_root = "/etc/chatsvc/secrets"

  # Variables whose value is a Secret Manager secret version (null: not used).
  secret_env_refs = {
    CHATSVC_JWT_SECRET     = var.jwt.secret == null ? null : { secret = var.jwt.secret, version = var.jwt.version }
    KAFKA_SASL_PASSWORD    = var.kafka.sasl == null ? null : { secret = var.kafka.sasl.password_secret, version = var.kafka.sasl.version }
    KAFKA_SSL_KEY_PASSWORD = try(var.kafka.tls.key_password_secret, null) == null ? null : { secret = var.kafka.tls.key_password_secret, version = var.kafka.tls.version }
    SCYLLA_USERNAME        = var.scylla.credentials == null ? null : { secret = var.scylla.credentials.username_secret, version = var.scylla.credentials.version }
    SCYLLA_PASSWORD        = var.scylla.credentials == null ? null : { secret = var.scylla.credentials.password_secret, version = var.scylla.credentials.version }
  }
  secret_env = { for name, ref in local.secret_env_refs : name => ref if ref != null }

  # Variables that name a file: the secret is mounted as <secret_root>/<dir>/<file> and the
  # variable is set to that path.
  secret_file_refs = {
    CHATSVC_JWT_PUBLIC_KEY = var.jwt.public_key_secret == null ? null : { dir = "jwt-public-key", file = "public.pem", secret = var.jwt.public_key_secret, version = var.jwt.version }
    KAFKA_SSL_CA_CERT      = var.kafka.tls == null ? null : { dir = "kafka-ca", file = "ca.pem", secret = var.kafka.tls.ca_cert_secret, version = var.kafka.tls.version }
    KAFKA_SSL_CLIENT_CERT  = var.kafka.tls == null ? null : { dir = "kafka-client-cert", file = "client.pem", secret = var.kafka.tls.client_cert_secret, version = var.kafka.tls.version }
    KAFKA_SSL_CLIENT_KEY   = var.kafka.tls == null ? null : { dir = "kafka-client-key", file = "client.key", secret = var.kafka.tls.client_key_secret, version = var.kafka.tls.version }
    SCYLLA_SSL_CA_CERT     = var.scylla.tls == null ? null : { dir = "scylla-ca", file = "ca.pem", secret = var.scylla.tls.ca_cert_secret, version = var.scylla.tls.version }
    SCYLLA_SSL_CLIENT_CERT = try(var.scylla.tls.client_cert_secret, null) == null ? null : { dir = "scylla-client-cert", file = "client.pem", secret = var.scylla.tls.client_cert_secret, version = var.scylla.tls.version }
    SCYLLA_SSL_CLIENT_KEY  = try(var.scylla.tls.client_key_secret, null) == null ? null : { dir = "scylla-client-key", file = "client.key", secret = var.scylla.tls.client_key_secret, version = var.scylla.tls.version }
  }
  secret_files = {
    for name, ref in local.secret_file_refs : name => merge(ref, {
      mount_path = "${local.secret_root}/${ref.dir}"
      path       = "${local.secret_root}/${ref.dir}/${ref.file}"
    }) if ref != null
  }

  # Plain values (null: leave chatsvc's default).
  plain_env_values = {
    CHATSVC_ENV  = "production"
    CHATSVC_HOST = "0.0.0.0"
    CHATSVC_PORT = tostring(local.container_port)
    # The image's data directory; with ScyllaDB nothing durable is written there.
    CHATSVC_DATA_DIR     = "/var/lib/chatsvc"
    CHATSVC_LOG_LEVEL    = var.log_level
    CHATSVC_CORS_ORIGINS = length(var.cors_origins) == 0 ? null : join(",", var.cors_origins)
    CHATSVC_STORE        = "scylla"
    # The schema is migrated by the <name>-migrate job (main.tf) before a new revision serves.
    CHATSVC_AUTO_MIGRATE = "false"
    # Cloud Run routes one port only, and it is public: the admin API is not served here.
    CHATSVC_GRPC_ENABLED     = "false"
    CHATSVC_PING_INTERVAL    = tostring(var.ping_interval_seconds)
    CHATSVC_PING_TIMEOUT     = tostring(var.ping_timeout_seconds)
    CHATSVC_SHUTDOWN_TIMEOUT = tostring(var.shutdown_timeout_seconds)
    CHATSVC_JWT_ALGORITHMS   = length(var.jwt.algorithms) == 0 ? null : join(",", var.jwt.algorithms)
    CHATSVC_JWT_ISSUER       = var.jwt.issuer
    CHATSVC_JWT_AUDIENCE     = var.jwt.audience
    KAFKA_BROKERS            = join(",", var.kafka.brokers)
    KAFKA_TOPIC              = var.kafka.topic
    KAFKA_CLIENT_ID          = var.kafka.client_id
    KAFKA_SASL_MECHANISM     = try(var.kafka.sasl.mechanism, null)
    KAFKA_SASL_USERNAME      = try(var.kafka.sasl.username, null)
    SCYLLA_CONTACT_POINTS    = join(",", var.scylla.contact_points)
    SCYLLA_PORT              = tostring(var.scylla.port)
    SCYLLA_KEYSPACE          = var.scylla.keyspace
    SCYLLA_LOCAL_DC          = var.scylla.local_dc
    SCYLLA_REPLICATION       = var.scylla.replication
    SCYLLA_CONSISTENCY       = var.scylla.consistency
  }
  plain_env = merge(
    { for name, value in local.plain_env_values : name => value if value != null },
    { for name, file in local.secret_files : name => file.path },
  )

  # Every Secret Manager secret the service account may read (and nothing else).
  secret_ids = toset(concat(
    [for ref in values(local.secret_env) : ref.secret],
    [for file in values(local.secret_files) : file.secret],
  ))
}

# Rules that involve more than one variable (a validation block sees only its own variable
# before OpenTofu 1.8 / Terraform 1.9). terraform_data is built in, so plan checks these
# before anything is created, and the tests can run them without the google provider.
resource "terraform_data" "invariants" {
  lifecycle {
    precondition {
      condition     = var.min_instances <= var.max_instances
      error_message = "min_instances must not exceed max_instances."
    }
    precondition {
      # "Well inside": a heartbeat that outlasts a tenth of the request timeout would leave
      # dead sockets holding request slots for minutes.
      condition     = var.ping_interval_seconds + var.ping_timeout_seconds <= local.request_timeout_seconds / 10
      error_message = "ping_interval_seconds + ping_timeout_seconds must stay within a tenth of the 3600 s request timeout."
    }
    precondition {
      # The drain may spend the shutdown timeout twice (sockets, then in-flight handlers),
      # and closing Kafka and ScyllaDB needs the rest.
      condition     = 2 * var.shutdown_timeout_seconds + 2 <= local.sigterm_grace_seconds
      error_message = "shutdown_timeout_seconds: chatsvc's drain must finish within Cloud Run's 10 s from SIGTERM to SIGKILL."
    }
  }
}
