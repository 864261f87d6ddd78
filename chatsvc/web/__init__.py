"""HTTP surface: health, readiness, metrics, origin policy, access log, demo page."""
