"""Fan-out between replicas: python-socketio client managers (in-process or Kafka)."""
