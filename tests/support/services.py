"""The real Kafka broker and CQL node the integration tests use.

``make test`` starts them with ``scripts/kafka start`` and ``scripts/cassandra start``
(each writes an env file into ``$CHATSVC_RUN_DIR``, which ``scripts/test`` exports; the
scripts' default, and so this one's, is the checkout's own ``.run/``). A test that needs one
and finds it missing fails with the command that starts it; it never skips.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("CHATSVC_RUN_DIR") or REPO / ".run")


def _load(path: Path, how: str) -> dict[str, str]:
    if not path.is_file():
        pytest.fail(
            f"{path} not found: the test service is not running. Start it with `{how}` (or run `make test`)."
        )
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(shlex.split(value)) if value else ""
    return values


def kafka_env() -> dict[str, str]:
    """``KAFKA_TEST_*`` values of the running test broker."""
    return _load(RUN_DIR / "kafka" / "kafka.env", "scripts/kafka start")


def cassandra_env() -> dict[str, str]:
    """``CASSANDRA_TEST_*`` values of the running CQL node."""
    return _load(RUN_DIR / "cassandra" / "cassandra.env", "scripts/cassandra start")
