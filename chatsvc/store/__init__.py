"""History stores: the durable record of every room (SQLite embedded, ScyllaDB in production)."""
