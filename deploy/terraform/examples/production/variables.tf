# What differs between projects; everything else is in main.tf. Values go in
# terraform.tfvars (start from terraform.tfvars.example). The module validates them.

variable "project_id" {
  description = "Google Cloud project ID that runs chatsvc."
  type        = string
}

variable "region" {
  description = "Cloud Run region; the VPC subnet, Kafka and ScyllaDB are in the same region."
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "chatsvc image by digest, e.g. europe-west1-docker.pkg.dev/PROJECT/chatsvc/chatsvc@sha256:..."
  type        = string
}

variable "custom_domain" {
  description = "Domain mapped to the service (verified in the project), or null for the run.app URL only."
  type        = string
  default     = null
}
