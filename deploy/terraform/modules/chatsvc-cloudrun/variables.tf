# Inputs of the chatsvc Cloud Run module. Every variable has a description and, where a
# wrong value would only fail at apply time (or, worse, at the first websocket), a validation.
# Secrets are never values here: each *_secret is the name of a Secret Manager secret that
# exists already (created out of band, like k8s/secrets/), so no secret ends up in the state.

variable "project_id" {
  description = "Google Cloud project that runs the service."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lower-case letters, digits and hyphens), not a project number or name."
  }
}

variable "region" {
  description = "Cloud Run region, e.g. europe-west1. Kafka and ScyllaDB should be in the same region (every message crosses to Kafka and back)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like europe-west1 (a region, not a zone)."
  }
}

variable "name" {
  description = "Name of the Cloud Run service; also the prefix of the migration job (<name>-migrate) and the service account (<name>-run)."
  type        = string
  default     = "chatsvc"

  validation {
    # 4..24: the service account ID (<name>-run) must be 6-30 characters, and the job name
    # plus its execution token must stay under 63.
    condition     = can(regex("^[a-z][a-z0-9-]{2,22}[a-z0-9]$", var.name))
    error_message = "name must be 4-24 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "image" {
  description = "chatsvc container image by digest (REGISTRY/PATH@sha256:...), built from the repository's Dockerfile. A digest, not a tag: a new digest is what triggers the migration job, and a re-pushed tag would silently change what runs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest: REGISTRY/PATH@sha256:<64 hex digits>."
  }
}

variable "labels" {
  description = "Labels put on the service, the job and the service account's resources."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "labels: keys and values must be lower-case letters, digits, _ and - (keys start with a letter, at most 63 characters)."
  }
}

# -- scaling and sockets -------------------------------------------------------------------

variable "min_instances" {
  description = "Instances kept running at all times. At least 1: a websocket server scaled to zero drops every reconnecting client into a cold start, and the Kafka consumer must keep running to fan out."
  type        = number
  default     = 2

  validation {
    condition     = var.min_instances >= 1 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number >= 1."
  }
}

variable "max_instances" {
  description = "Upper bound of autoscaling (must be >= min_instances)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number between 1 and 1000."
  }
}

variable "concurrency" {
  description = "Concurrent requests per instance. Every open websocket (and every pending long-poll) counts as one request for its whole life, so this is the number of sockets per instance: Cloud Run's maximum, 1000, by default. Lower it if an instance runs out of memory before that (bench/README.md has the memory per connection)."
  type        = number
  default     = 1000

  validation {
    condition     = var.concurrency >= 100 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "concurrency must be a whole number between 100 and 1000 (each socket holds one request slot; Cloud Run allows at most 1000)."
  }
}

variable "cpu" {
  description = "CPU limit per instance (Cloud Run syntax: \"1\", \"2\", \"4\" or millicores such as \"1000m\"). Always allocated: the Kafka consumer, heartbeats and Engine.IO pings run between requests."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8", "1000m", "2000m", "4000m"], var.cpu)
    error_message = "cpu must be 1, 2, 4, 6 or 8 (whole CPUs: always-allocated CPU below 1 is not allowed)."
  }
}

variable "memory" {
  description = "Memory limit per instance (Cloud Run syntax, e.g. 512Mi, 1Gi)."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a quantity in Mi or Gi, e.g. 512Mi or 2Gi."
  }
}

variable "ping_interval_seconds" {
  description = "CHATSVC_PING_INTERVAL: Engine.IO ping interval. Interval plus timeout must stay well inside the 3600 s request timeout (Cloud Run's websocket limit), which they do by construction here (each at most 300)."
  type        = number
  default     = 25

  validation {
    condition     = var.ping_interval_seconds >= 1 && var.ping_interval_seconds <= 300
    error_message = "ping_interval_seconds must be between 1 and 300."
  }
}

variable "ping_timeout_seconds" {
  description = "CHATSVC_PING_TIMEOUT: how long chatsvc waits for a pong before it drops a socket."
  type        = number
  default     = 20

  validation {
    condition     = var.ping_timeout_seconds >= 1 && var.ping_timeout_seconds <= 300
    error_message = "ping_timeout_seconds must be between 1 and 300."
  }
}

variable "shutdown_timeout_seconds" {
  description = "CHATSVC_SHUTDOWN_TIMEOUT: drain bound after SIGTERM. Cloud Run kills an instance 10 s after SIGTERM, and chatsvc may spend the bound twice (sockets, then in-flight handlers), so at most 4 s leaves 2 s to close Kafka and ScyllaDB."
  type        = number
  default     = 3

  validation {
    condition     = var.shutdown_timeout_seconds >= 0.5 && var.shutdown_timeout_seconds <= 4
    error_message = "shutdown_timeout_seconds must be between 0.5 and 4 (Cloud Run allows 10 s from SIGTERM to SIGKILL)."
  }
}

# -- network -------------------------------------------------------------------------------

variable "ingress" {
  description = "Who may reach the service: INGRESS_TRAFFIC_ALL (browsers straight to *.run.app or the mapped domain), INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (only through your external Application Load Balancer) or INGRESS_TRAFFIC_INTERNAL_ONLY."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_INTERNAL_ONLY"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER or INGRESS_TRAFFIC_INTERNAL_ONLY."
  }
}

variable "allow_unauthenticated" {
  description = "Grant roles/run.invoker to allUsers. Browsers cannot attach Google identity tokens, so a public chat gateway needs this; chatsvc itself authenticates every socket with its JWT."
  type        = bool
  default     = true
}

variable "vpc" {
  description = "How instances reach Kafka and ScyllaDB on private addresses: Direct VPC egress (network + subnetwork, optional network_tags for firewall rules) or a Serverless VPC Access connector (connector: its ID). Exactly one of the two. egress: PRIVATE_RANGES_ONLY (default) or ALL_TRAFFIC."
  type = object({
    network      = optional(string)
    subnetwork   = optional(string)
    network_tags = optional(list(string), [])
    connector    = optional(string)
    egress       = optional(string, "PRIVATE_RANGES_ONLY")
  })

  validation {
    condition     = (var.vpc.subnetwork != null) != (var.vpc.connector != null)
    error_message = "vpc: set either subnetwork (Direct VPC egress) or connector (Serverless VPC Access), exactly one."
  }

  validation {
    condition     = var.vpc.connector == null || (var.vpc.network == null && length(var.vpc.network_tags) == 0)
    error_message = "vpc: network and network_tags belong to Direct VPC egress; a connector brings its own network."
  }

  validation {
    condition     = contains(["PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"], var.vpc.egress)
    error_message = "vpc.egress must be PRIVATE_RANGES_ONLY or ALL_TRAFFIC."
  }
}

variable "custom_domain" {
  description = "Optional domain (chat.example.com) mapped to the service with a Cloud Run domain mapping and a Google-managed certificate; the domain must be verified in the project first. null: no mapping (use the *.run.app URL, or a load balancer)."
  type        = string
  default     = null

  validation {
    condition     = var.custom_domain == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.custom_domain))
    error_message = "custom_domain must be a lower-case DNS name such as chat.example.com (no scheme, no path)."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the service (set false only to tear an environment down)."
  type        = bool
  default     = true
}

# -- chatsvc settings ----------------------------------------------------------------------

variable "log_level" {
  description = "CHATSVC_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "cors_origins" {
  description = "CHATSVC_CORS_ORIGINS: browser origins other than the service's own URL allowed to connect, e.g. [\"https://app.example.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.cors_origins : can(regex("^https?://[^/]+$", o))])
    error_message = "cors_origins: each origin must look like https://host[:port] (no path, no trailing slash; \"*\" is not accepted here)."
  }
}

variable "jwt" {
  description = "How socket tokens are verified: secret (Secret Manager secret holding the HMAC key, >= 32 characters; becomes CHATSVC_JWT_SECRET) or public_key_secret (a PEM public key, mounted as a file for CHATSVC_JWT_PUBLIC_KEY), exactly one. version: a secret version number or \"latest\"."
  type = object({
    secret            = optional(string)
    public_key_secret = optional(string)
    version           = optional(string, "latest")
    algorithms        = optional(list(string), [])
    issuer            = optional(string)
    audience          = optional(string)
  })

  validation {
    condition     = (var.jwt.secret != null) != (var.jwt.public_key_secret != null)
    error_message = "jwt: set either secret (HMAC) or public_key_secret (RSA/EC), exactly one."
  }

  validation {
    condition     = can(regex("^([1-9][0-9]*|latest)$", var.jwt.version))
    error_message = "jwt.version must be a version number or \"latest\"."
  }

  validation {
    condition = alltrue([
      for a in var.jwt.algorithms : contains(
        var.jwt.secret != null ? ["HS256", "HS384", "HS512"] : ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"],
        a
      )
    ])
    error_message = "jwt.algorithms: HS* go with secret, RS*/ES*/PS*/EdDSA with public_key_secret (chatsvc never mixes them)."
  }
}

variable "kafka" {
  description = "Cross-instance fan-out. brokers: host:port list on the VPC. tls: Secret Manager secrets with the CA, client certificate and key in PEM (mutual TLS; mounted as files), plus an optional key_password_secret. sasl: mechanism, username and password_secret (SASL always runs over TLS). Secret versions: a number or \"latest\"."
  type = object({
    brokers   = list(string)
    topic     = optional(string, "chatsvc.fanout")
    client_id = optional(string, "chatsvc")
    tls = optional(object({
      ca_cert_secret      = string
      client_cert_secret  = string
      client_key_secret   = string
      key_password_secret = optional(string)
      version             = optional(string, "latest")
    }))
    sasl = optional(object({
      mechanism       = string
      username        = string
      password_secret = string
      version         = optional(string, "latest")
    }))
  })

  validation {
    condition     = length(var.kafka.brokers) > 0 && alltrue([for b in var.kafka.brokers : can(regex("^[A-Za-z0-9.-]+:[0-9]{1,5}$", b))])
    error_message = "kafka.brokers must be a non-empty list of host:port."
  }

  validation {
    condition     = var.kafka.sasl == null || contains(["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"], try(var.kafka.sasl.mechanism, ""))
    error_message = "kafka.sasl.mechanism must be SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN."
  }

  validation {
    condition     = var.kafka.tls != null || var.kafka.sasl != null
    error_message = "kafka: set tls (mutual TLS) or sasl (over TLS); chatsvc on Cloud Run never talks to Kafka in plaintext."
  }

  validation {
    condition = alltrue([
      for v in compact([try(var.kafka.tls.version, null), try(var.kafka.sasl.version, null)]) : can(regex("^([1-9][0-9]*|latest)$", v))
    ])
    error_message = "kafka: secret versions must be a version number or \"latest\"."
  }
}

variable "scylla" {
  description = "History store. contact_points: addresses on the VPC. credentials: Secret Manager secrets with the username and password. tls: CA (and optionally client certificate and key) secrets, mounted as files. replication: SimpleStrategy:N or NetworkTopologyStrategy:dc=N[,dc=N], used by the migration job."
  type = object({
    contact_points = list(string)
    port           = optional(number, 9042)
    keyspace       = optional(string, "chatsvc")
    local_dc       = optional(string)
    replication    = string
    consistency    = optional(string, "LOCAL_QUORUM")
    credentials = optional(object({
      username_secret = string
      password_secret = string
      version         = optional(string, "latest")
    }))
    tls = optional(object({
      ca_cert_secret     = string
      client_cert_secret = optional(string)
      client_key_secret  = optional(string)
      version            = optional(string, "latest")
    }))
  })

  validation {
    condition     = length(var.scylla.contact_points) > 0
    error_message = "scylla.contact_points must not be empty."
  }

  validation {
    condition     = var.scylla.port >= 1 && var.scylla.port <= 65535
    error_message = "scylla.port must be a TCP port."
  }

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,48}$", var.scylla.keyspace))
    error_message = "scylla.keyspace must be letters, digits and _, at most 48 characters."
  }

  validation {
    condition     = can(regex("^(SimpleStrategy:[1-9][0-9]*|NetworkTopologyStrategy:[^=,]+=[1-9][0-9]*(,[^=,]+=[1-9][0-9]*)*)$", var.scylla.replication))
    error_message = "scylla.replication must be SimpleStrategy:N or NetworkTopologyStrategy:dc=N[,dc=N]."
  }

  validation {
    condition     = contains(["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"], var.scylla.consistency)
    error_message = "scylla.consistency must be a CQL consistency level such as LOCAL_QUORUM."
  }

  validation {
    condition     = var.scylla.tls == null || ((try(var.scylla.tls.client_cert_secret, null) == null) == (try(var.scylla.tls.client_key_secret, null) == null))
    error_message = "scylla.tls: client_cert_secret and client_key_secret go together."
  }
}
