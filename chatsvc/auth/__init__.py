"""Authentication: who a connection or an admin call belongs to."""
