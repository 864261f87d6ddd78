"""Generated code of protos/chatsvc/admin/v1 (scripts/gen-protos; do not edit by hand)."""
