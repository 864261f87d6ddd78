output "url" {
  description = "Where clients connect (socket.io-client's URL)."
  value       = module.chatsvc.url
}

output "service_uri" {
  description = "The service's run.app URL."
  value       = module.chatsvc.service_uri
}

output "migration_job_name" {
  description = "The schema migration job (gcloud run jobs execute <name> --region <region> --wait)."
  value       = module.chatsvc.migration_job_name
}

output "dns_records" {
  description = "DNS records for custom_domain."
  value       = module.chatsvc.dns_records
}
