terraform {
  # optional() attributes with defaults need 1.3; 1.6 is the oldest OpenTofu release.
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.42.0 added run_execution_token to google_cloud_run_v2_job (the migration step).
      version = ">= 7.42.0, < 9.0.0"
    }
  }
}
