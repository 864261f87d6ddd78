"""Print a new KRaft cluster id for ``scripts/kafka``'s ``kafka-storage format``.

A cluster id is a random UUID in URL-safe base64 without padding (22 characters), as
Kafka's own ``Uuid.randomUuid`` makes it, and like Kafka's it never starts with ``-``:
one in 64 would, and ``--cluster-id -xyz...`` then reads as a missing argument (a fresh
machine's ``make test`` failed that way, 2026-12-07).
"""

from __future__ import annotations

import base64
import uuid


def new_cluster_id() -> str:
    """A random cluster id that does not start with ``-``."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


if __name__ == "__main__":
    print(new_cluster_id())
