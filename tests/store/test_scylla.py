"""What only the ScyllaDB store has: the schema CLI, driver error translation, the
one-way write-time tricks, TLS setup, and surviving a CQL outage without a restart."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cassandra import (
    AuthenticationFailed,
    InvalidRequest,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import NoHostAvailable

from chatsvc.errors import InvalidMessageId, NotFound, StoreUnavailable
from chatsvc.model.ids import id_at, lowest_id_at
from chatsvc.model.messages import Message
from chatsvc.settings import ScyllaSettings, TlsFiles
from chatsvc.store.scylla.driver import describe_failure
from chatsvc.store.scylla.rows import id_write_time
from chatsvc.store.scylla.schema import replication_cql
from chatsvc.store.scylla.store import ScyllaStore
from tests.conftest import ServerFactory
from tests.store.conftest import StoreSpec, cli_env, new_keyspace, scylla_env
from tests.support.clients import ClientPool, assert_error_ack
from tests.support.servers import ServerProcess, free_port, run_cli
from tests.support.services import REPO
from tests.support.tokens import token

NOW_MS = int(time.time() * 1000)
CASSANDRA = REPO / "scripts" / "cassandra"


@pytest.fixture
async def scylla(scylla_spec: StoreSpec) -> AsyncIterator[ScyllaStore]:
    store = scylla_spec.make()
    assert isinstance(store, ScyllaStore)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


def _msg(room: str, ms: int, text: str = "hi", cmid: str | None = None) -> Message:
    return Message(id_at(ms), room, "alice", "Alice", text, ms, client_msg_id=cmid)


# -- pure functions -------------------------------------------------------------------------


def test_replication_maps() -> None:
    assert replication_cql("SimpleStrategy:3") == "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    assert replication_cql("NetworkTopologyStrategy:eu-west=3,us-east=2") == (
        "{'class': 'NetworkTopologyStrategy', 'eu-west': 3, 'us-east': 2}"
    )


def test_write_times_order_like_ids() -> None:
    ids = sorted(id_at(NOW_MS + (i % 7)) for i in range(2000))
    times = [id_write_time(i) for i in ids]
    assert times == sorted(times)
    assert id_write_time(lowest_id_at(NOW_MS)) == NOW_MS * 1000
    assert all(NOW_MS * 1000 <= t < (NOW_MS + 7) * 1000 for t in times)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoHostAvailable("secret detail", {"10.0.0.1:9042": ConnectionRefusedError()}), "no ScyllaDB"),
        (NoHostAvailable("secret detail", {"h": AuthenticationFailed("secret")}), "authentication"),
        (OperationTimedOut("secret detail"), "timed out"),
        (ReadTimeout("secret detail", consistency=6, required_responses=2, received_responses=1), "timed"),
        (WriteTimeout("secret detail", consistency=6, write_type=0), "timed out"),
        (Unavailable("secret detail", consistency=6, required_replicas=2, alive_replicas=1), "replicas"),
        (InvalidRequest("unconfigured table messages secret"), "chatsvc migrate"),
    ],
)
def test_driver_errors_become_short_messages(error: Exception, expected: str) -> None:
    message = describe_failure(error)
    assert expected in message
    assert "secret" not in message


# -- TLS setup ------------------------------------------------------------------------------


def test_tls_context_verifies_server_and_offers_client_cert(tmp_path: Path) -> None:
    testca = REPO / "scripts" / "testca.py"
    subprocess.run([sys.executable, str(testca), str(tmp_path), "--quiet"], check=True, timeout=60)
    tls = TlsFiles(tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key")
    store = ScyllaStore(ScyllaSettings(contact_points=("127.0.0.1",), tls=tls))
    context = store._db.ssl_context()
    assert context is not None and context.check_hostname
    assert context.verify_mode.name == "CERT_REQUIRED"


async def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate")
    store = ScyllaStore(ScyllaSettings(contact_points=("127.0.0.1",), port=free_port(), tls=TlsFiles(bad)))
    with pytest.raises(StoreUnavailable, match="TLS"):
        await store.open()


async def test_a_malformed_id_is_a_store_level_error_before_any_request() -> None:
    """The bucket comes from the id: a non-id raises the store's InvalidMessageId (never the
    protocol's InvalidPayload), before the store even needs a connection."""
    store = ScyllaStore(ScyllaSettings(contact_points=("127.0.0.1",), port=free_port()))
    with pytest.raises(InvalidMessageId):
        await store.get("r", "not-an-id")
    with pytest.raises(InvalidMessageId):
        await store.mark_read("r", "u", "not-an-id")


# -- schema ---------------------------------------------------------------------------------


def test_migrate_against_an_unreachable_port_fails_clearly(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(tmp_path, {"SCYLLA_CONTACT_POINTS": "127.0.0.1", "SCYLLA_PORT": str(port)})
    result = run_cli(["migrate"], env, timeout=60)
    assert result.returncode != 0
    assert f"cannot connect to ScyllaDB at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_migrate_again_from_the_cli_keeps_the_data(scylla_spec: StoreSpec, tmp_path: Path) -> None:
    # The session keyspace was created by `chatsvc migrate` (see conftest): run it twice more.
    store = scylla_spec.make()
    await store.open()
    try:
        m = _msg(f"remigrate-{id_at(NOW_MS)[-8:]}", NOW_MS)
        await store.append(m)
        for _ in range(2):
            result = await asyncio.to_thread(run_cli, ["migrate"], cli_env(tmp_path, scylla_spec.env), 180)
            assert result.returncode == 0, result.stderr
            assert "schema is up to date" in result.stdout
        assert await store.get(m.room, m.id) == m
    finally:
        await store.aclose()


async def test_an_unmigrated_keyspace_says_to_migrate() -> None:
    spec = StoreSpec("scylla", scylla_env(new_keyspace()))  # never created
    store = spec.make()
    await store.open()
    try:
        with pytest.raises(StoreUnavailable, match="chatsvc migrate"):
            await store.ping()
        with pytest.raises(StoreUnavailable, match="chatsvc migrate"):
            await store.append(_msg("r", NOW_MS))
    finally:
        await store.aclose()


# -- write paths ----------------------------------------------------------------------------


async def test_a_send_that_failed_after_its_key_is_completed_by_the_retry(scylla: ScyllaStore) -> None:
    room = f"half-{id_at(NOW_MS)[-8:]}"
    first = _msg(room, NOW_MS - 500, "first try", cmid="c-1")
    # The first attempt wrote its idempotency key, then the message write failed.
    await scylla._run("key_put", (room, "alice", "c-1", first.id, first.created_at_ms))
    retry = _msg(room, NOW_MS, "first try", cmid="c-1")
    stored, created = await scylla.append(retry)
    assert created, "nothing was stored before: this is the first delivery"
    assert stored.id == first.id and stored.created_at_ms == first.created_at_ms
    assert (await scylla.append(_msg(room, NOW_MS + 1, "first try", cmid="c-1"))) == (stored, False)
    assert [m.id for m in (await scylla.history(room, before=None, limit=10)).messages] == [first.id]


async def test_an_edit_landing_after_a_delete_scrubs_its_text(
    scylla: ScyllaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = f"race-{id_at(NOW_MS)[-8:]}"
    m = _msg(room, NOW_MS, "secret")
    await scylla.append(m)
    await scylla.delete(room, m.id, NOW_MS + 1)

    async def stale_get(room: str, message_id: str) -> Message:
        return m  # the edit checked before the delete landed

    monkeypatch.setattr(scylla, "get", stale_get)
    with pytest.raises(NotFound):
        await scylla.edit(room, m.id, "edited secret", NOW_MS + 2)
    monkeypatch.undo()
    found = await scylla._get(room, m.id)
    assert found is not None
    row, _written_at = found
    assert row[3] == "" and row[7] is True, "the stored cell must not keep the edited text"


async def test_read_markers_and_last_ids_never_move_back(scylla: ScyllaStore) -> None:
    room = f"order-{id_at(NOW_MS)[-8:]}"
    older, newer = _msg(room, NOW_MS - 10), _msg(room, NOW_MS)
    await scylla.append(newer)
    await scylla.append(older)  # arrives later, is older
    info = await scylla.get_room(room)
    assert info is not None and info.last_message_id == newer.id
    await scylla.mark_read(room, "bob", newer.id)
    await scylla.mark_read(room, "bob", older.id)
    rows = await scylla._run("marker_get", (room, "bob"))
    assert rows[0][0] == newer.id


# -- outage ---------------------------------------------------------------------------------


async def _cassandra(command: str, within: float) -> None:
    process = await asyncio.create_subprocess_exec(
        str(CASSANDRA), command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(within):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"scripts/cassandra {command} took more than {within}s") from None
    assert process.returncode == 0, f"scripts/cassandra {command}: {output.decode(errors='replace')}"


async def _wait_ready(server: ServerProcess, ready: bool, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(server.http_json, "/readyz")
        if (status == 200) == ready:
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"/readyz did not become {'ready' if ready else 'not ready'}: {body}")


@pytest.mark.integration
@pytest.mark.disrupts_services
async def test_cql_node_outage_and_recovery_without_restart(
    scylla_spec: StoreSpec, server_factory: ServerFactory
) -> None:
    env = {
        **scylla_spec.env,
        "SCYLLA_REQUEST_TIMEOUT": "2",
        "CHATSVC_GRPC_ENABLED": "false",
        "CHATSVC_RATE_LIMIT_PER_SECOND": "100",
        "CHATSVC_RATE_LIMIT_BURST": "100",
    }
    server = server_factory(name="outage", **env)
    room = f"outage-{id_at(NOW_MS)[-8:]}"
    acked: dict[str, str] = {}

    async def send(client: Any, cmid: str) -> dict[str, Any]:
        # Longer than the store's request timeout, which a send during the outage may wait out.
        ack: dict[str, Any] = await client.sio.call(
            "message", {"room": room, "text": f"text {cmid}", "client_msg_id": cmid}, timeout=30
        )
        if ack.get("ok"):
            acked[ack["message"]["id"]] = ack["message"]["text"]
        else:
            assert_error_ack(ack, "store_unavailable")
        return ack

    async with ClientPool() as pool:
        client = await pool.connect(server.url, token("alice"))
        await client.ok("join", {"room": room})
        for n in range(3):
            assert (await send(client, f"before-{n}"))["ok"]
        await _cassandra("stop", within=120)
        try:
            failed = await send(client, "during")
            assert not failed["ok"], "a send the store did not take must not be acked"
            body = await _wait_ready(server, ready=False, within=30)
            assert "store" in body["failing"], body
            history = await client.sio.call("history", {"room": room}, timeout=30)
            assert_error_ack(history, "store_unavailable")
        finally:
            await _cassandra("start", within=300)
        # The server reconnects by itself: retry the failed send until the store takes it.
        deadline = time.monotonic() + 120
        while not (await send(client, "during"))["ok"]:
            assert time.monotonic() < deadline, "the server did not recover within 120s"
            await asyncio.sleep(1)
        assert (await send(client, "after"))["ok"]
        await _wait_ready(server, ready=True, within=60)
        page = await client.ok("history", {"room": room, "limit": 100})
    stored = {m["id"]: m["text"] for m in page["messages"]}
    assert acked.items() <= stored.items(), "every acked message is in history"
    assert len(acked) == 5


def test_an_outage_logs_each_cause_once_however_they_alternate(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 21: a node going down alternates between timeouts and refused connections; the
    log said so twice a second. Each cause is logged once per outage, and again after one."""
    store = ScyllaStore(ScyllaSettings(contact_points=("127.0.0.1",), port=free_port()))
    session = store._db
    causes = [OperationTimedOut("t"), NoHostAvailable("down", {"127.0.0.1": ConnectionRefusedError()})]
    with caplog.at_level(logging.INFO, logger="chatsvc.store.scylla.driver"):
        for i in range(20):
            assert isinstance(session._failed(causes[i % 2]), StoreUnavailable)
        session._succeeded()
        session._succeeded()
        session._failed(causes[0])
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO", "WARNING"], lines
    assert "timed out" in lines[2][1] and "reachable" in lines[2][1]
