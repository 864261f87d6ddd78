output "url" {
  description = "Public URL of the chat gateway: https://<custom_domain> when one is mapped, else the service's run.app URL. socket.io-client connects here."
  value       = var.custom_domain == null ? google_cloud_run_v2_service.chatsvc.uri : "https://${var.custom_domain}"
}

output "service_uri" {
  description = "The service's own run.app URL (works even before a custom domain's certificate is issued)."
  value       = google_cloud_run_v2_service.chatsvc.uri
}

output "service_name" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.chatsvc.name
}

output "service_account_email" {
  description = "Runtime service account of the service and the migration job."
  value       = google_service_account.chatsvc.email
}

output "migration_job_name" {
  description = "Cloud Run job running `chatsvc migrate` (run by apply when the image changes; also `gcloud run jobs execute`)."
  value       = google_cloud_run_v2_job.migrate.name
}

output "dns_records" {
  description = "DNS records to create for custom_domain (empty without one)."
  value       = try(google_cloud_run_domain_mapping.chatsvc[0].status[0].resource_records, [])
}
