"""The gRPC admin API (the only package, with its CLI client, that imports grpc)."""
