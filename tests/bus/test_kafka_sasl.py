"""SASL/SCRAM against the real broker: ``scripts/kafka``'s SASL_SSL listener and SCRAM user.

Two replicas authenticate with the ``KAFKA_SASL_*`` settings and fan out to each other over
it; a wrong password is a startup failure (exit 3) whose one line names SASL authentication.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bus.helpers import ChatClient, new_topic
from tests.bus.test_kafka_startup import STARTUP_FAILED, attempts, serve
from tests.conftest import ServerFactory
from tests.support.servers import ServerProcess
from tests.support.services import RUN_DIR

pytestmark = pytest.mark.integration

ROOM = "stocks.SASL"


@pytest.fixture
def sasl(kafka: dict[str, str]) -> dict[str, str]:
    """The broker's SASL_SSL listener and SCRAM user; a broker started before they existed fails."""
    if "KAFKA_TEST_SASL" not in kafka:
        pytest.fail(
            f"{RUN_DIR / 'kafka' / 'kafka.env'} has no KAFKA_TEST_SASL: the running broker was started "
            "by an older scripts/kafka without the SASL_SSL listener; restart the broker with the new "
            "scripts/kafka (`scripts/kafka restart`, which reformats its storage to add the SCRAM user)."
        )
    return kafka


def sasl_env(kafka: dict[str, str], password: str | None = None) -> dict[str, str]:
    """chatsvc's bus settings for the SASL_SSL listener (TLS verified against the test CA)."""
    return {
        "KAFKA_BROKERS": kafka["KAFKA_TEST_SASL"],
        "KAFKA_TOPIC": new_topic(),
        "KAFKA_SASL_MECHANISM": kafka["KAFKA_TEST_SASL_MECHANISM"],
        "KAFKA_SASL_USERNAME": kafka["KAFKA_TEST_SASL_USERNAME"],
        "KAFKA_SASL_PASSWORD": password if password is not None else kafka["KAFKA_TEST_SASL_PASSWORD"],
        # Settings take the three files together; the listener asks for no client certificate.
        "KAFKA_SSL_CA_CERT": kafka["KAFKA_TEST_CA"],
        "KAFKA_SSL_CLIENT_CERT": kafka["KAFKA_TEST_CLIENT_CERT"],
        "KAFKA_SSL_CLIENT_KEY": kafka["KAFKA_TEST_CLIENT_KEY"],
        "KAFKA_RETRY_BACKOFF_MS": "200",
        "KAFKA_CONNECT_RETRIES": "3",
    }


async def test_replicas_fan_out_over_sasl_scram(
    sasl: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    env = sasl_env(sasl)
    shared = tmp_path / "shared-data"
    r1 = server_factory(name="r1", data_dir=shared, CHATSVC_REPLICA_ID="r1", **env)
    r2 = server_factory(name="r2", data_dir=shared, CHATSVC_REPLICA_ID="r2", **env)
    for replica in (r1, r2):
        replica.wait_http("/readyz", timeout=30)
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    for client in (alice, bob):
        await client.call("join", {"room": ROOM})
    await alice.call("message", {"room": ROOM, "text": "over SCRAM"})
    got = await bob.wait_event("message", lambda m: m["text"] == "over SCRAM")
    assert got["user"]["id"] == "alice"
    # The log says which protocol was used, and never the password.
    log = r1.log_text()
    assert sasl["KAFKA_TEST_SASL_PASSWORD"] not in log


def test_a_wrong_password_is_a_clear_startup_error(sasl: dict[str, str], tmp_path: Path) -> None:
    env = sasl_env(sasl, password="not-" + sasl["KAFKA_TEST_SASL_PASSWORD"])
    code, lines = serve(tmp_path, **(env | {"KAFKA_CONNECT_RETRIES": "1"}))
    assert code == STARTUP_FAILED, "\n".join(lines)
    assert len(attempts(lines)) == 1, "\n".join(lines)
    last = lines[-1]
    assert last.startswith("chatsvc: startup failed: cannot connect to Kafka at "), last
    assert "SASL authentication failed" in last, last
    assert env["KAFKA_SASL_PASSWORD"] not in "\n".join(lines)
