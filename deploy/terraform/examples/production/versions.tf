terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.42.0, < 9.0.0"
    }
  }

  # State in a GCS bucket (versioned, in the same project): `tofu init
  # -backend-config=bucket=<bucket>` (deploy/terraform/README.md).
  backend "gcs" {
    prefix = "chatsvc/production"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
