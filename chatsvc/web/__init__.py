"""HTTP surface: health, readiness, metrics, origin policy, access log, the web client and Admin UI."""
