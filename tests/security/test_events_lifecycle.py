"""Issue 22, item 1: a client event named like a lifecycle handler (``disconnect``,
``connect``, socket.io's other reserved names) or naming no declared client event never
reaches a handler. Raw frames over websocket and long-polling against a real server: the
socket stays fully registered (admin kick/disconnect reach it, presence lists it), its
room limit, identity and rate bucket are unchanged."""

from __future__ import annotations

import inspect
import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from chatsvc.admin.v1 import admin_pb2
from chatsvc.app import NAMESPACE, SIO, STORE, create_app
from chatsvc.settings import Settings
from chatsvc.transport.sioserver import RESERVED_EVENTS, RecoveringServer, in_lifecycle
from tests.admin.helpers import admin_client
from tests.support.clients import (
    FAST_PATH_MODES,
    TRANSPORTS,
    assert_error_ack,
    fast_paths_env,
    running_server,
)
from tests.support.raw_socketio import RawSocket
from tests.support.servers import TEST_JWT_SECRET, ServerProcess
from tests.support.tokens import token

ROOMS = 3
BURST = 40


@pytest.fixture(scope="module", params=FAST_PATH_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("lifecycle"),
        **fast_paths_env(request.param),
        CHATSVC_MAX_ROOMS_PER_CONNECTION=str(ROOMS),
        CHATSVC_RATE_LIMIT_BURST=str(BURST),
        CHATSVC_RATE_LIMIT_PER_SECOND="0.1",
    ) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lifecycle_named_events_do_not_touch_the_socket(
    server: ServerProcess, session: aiohttp.ClientSession, transport: str
) -> None:
    user, other = unique("alice"), unique("mallory")
    rooms = [unique("r") for _ in range(ROOMS + 1)]
    raw = await RawSocket.open(session, server.url, transport)
    try:
        assert set(await raw.connect({"token": token(user)})) == {"sid"}
        for room in rooms[:ROOMS]:
            assert (await raw.call("join", {"room": room}))["ok"] is True

        # What the attack sent: no ack id, so nothing answers; then with ack ids.
        await raw.send('2["disconnect"]')
        await raw.send("2" + json.dumps(["connect", {"token": token(other)}]))
        await raw.send("2" + json.dumps(["disconnect", "client namespace disconnect"]))
        for name in sorted(RESERVED_EVENTS):
            assert_error_ack(await raw.call(name, {"token": token(other)}), "invalid_payload")
        for body in ("[]", "{}", '"join"', "[1]", "[null]", '[["join"]]', "true", "null"):
            ack = await raw.ack(await raw.emit_raw(body))
            assert_error_ack(ack, "invalid_payload")
        # Names of methods that are not client events.
        for name in ("on_connect", "end_session", "_join", "trigger_event", "kick", "__init__"):
            assert_error_ack(await raw.call(name, {"room": rooms[0]}), "invalid_payload")

        # Identity unchanged (the connect event carried another user's token).
        sent = await raw.call("message", {"room": rooms[0], "text": "still me"})
        assert sent["ok"] is True and sent["message"]["user"]["id"] == user, sent
        # The room set was not reset: the limit still counts the three rooms.
        assert_error_ack(await raw.call("join", {"room": rooms[ROOMS]}), "too_many_rooms")

        async with admin_client(server.grpc_port) as admin:
            presence = await admin.Presence(admin_pb2.PresenceRequest(room=rooms[1]))
            assert [u.id for u in presence.users] == [user]
            kicked = await admin.KickFromRoom(admin_pb2.KickFromRoomRequest(room=rooms[1], user_id=user))
            assert kicked.reach.sockets == 1
            assert await raw.event("kicked") == [{"room": rooms[1], "reason": kicked_reason(kicked)}]

            # The rate bucket was not refilled: refused events cost a token each like any
            # event (3 joins, 23 refused, 2 more) and 12 of its 40 are left (one more if
            # this test was slow: it refills at 0.1/s).
            allowed = 0
            for _ in range(BURST + 2):
                ack = await raw.call("typing", {"room": rooms[0], "typing": True})
                if ack["ok"] is not True:
                    assert_error_ack(ack, "rate_limited")
                    break
                allowed += 1
            assert 12 <= allowed <= 13, allowed

            ended = await admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id=user))
            assert ended.reach.sockets == 1
            end = await raw.event("session_end")
            assert end[0]["code"] == "disconnected", end
    finally:
        await raw.close()
    assert "Traceback" not in server.log_text()
    assert invalid_payloads(server) >= len(RESERVED_EVENTS) + 14  # refused events are counted


def invalid_payloads(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r'^chatsvc_errors_total\{code="invalid_payload"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_python_socketio_internals_the_guard_relies_on() -> None:
    """RecoveringServer._handle_event is where python-socketio 5.18.1 turns every EVENT
    (and reassembled BINARY_EVENT) into a handler call, and its lifecycle path reaches
    namespaces through _trigger_event; if an upgrade changes either, re-read sioserver.py."""
    server = socketio.AsyncServer
    assert list(inspect.signature(server._handle_event).parameters) == [
        "self",
        "eio_sid",
        "namespace",
        "id",
        "data",
    ]
    assert "server._trigger_event(data[0], namespace, sid, *data[1:])" in inspect.getsource(
        server._handle_event_internal
    )
    for method in (server._handle_connect, server._handle_disconnect, server.disconnect):
        assert re.search(r"self\._trigger_event\(\s*'(connect|disconnect)'", inspect.getsource(method)), (
            method
        )
    dispatch = inspect.getsource(server._handle_eio_message)
    # EVENT and, once its attachments are in, BINARY_EVENT.
    assert (
        len(re.findall(r"self\._handle_event\(eio_sid, pkt\.namespace, pkt\.id,\s*pkt\.data\)", dispatch))
        == 2
    )


async def test_the_namespace_runs_lifecycle_handlers_only_for_the_lifecycle_path(tmp_path: Path) -> None:
    """The second lock: ChatNamespace.trigger_event itself refuses reserved names unless
    python-socketio's lifecycle path (RecoveringServer._trigger_event) is calling."""
    app = create_app(
        Settings.from_env(
            {
                "CHATSVC_JWT_SECRET": TEST_JWT_SECRET,
                "CHATSVC_DATA_DIR": str(tmp_path),
                "CHATSVC_STORE": "memory",
                "CHATSVC_GRPC_ENABLED": "false",
            }
        )
    )
    namespace, sio = app[NAMESPACE], app[SIO]
    await app[STORE].open()  # the ban check reads it
    environ = {"REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": ""}
    await sio._trigger_event("connect", "/", "sid1", environ, {"token": token("alice")})
    assert namespace.sids_of("alice") == ["sid1"]
    for name in sorted(RESERVED_EVENTS):
        ack = await namespace.trigger_event(name, "sid1", {"token": token("mallory")})
        assert_error_ack(ack, "invalid_payload")
        assert not in_lifecycle()
    assert namespace.sids_of("alice") == ["sid1"] and not namespace.sids_of("mallory")
    await sio._trigger_event("disconnect", "/", "sid1", "client namespace disconnect")
    assert namespace.sids_of("alice") == []
    namespace.close()
    await app[STORE].aclose()


def kicked_reason(_: object) -> str:
    return "removed from the room by an administrator"


async def test_reserved_names_are_refused_on_a_namespace_without_a_table() -> None:
    """The Admin UI's namespace (or any without declare_events) still never runs a
    lifecycle handler for a client event, and the ack says why."""
    sio = RecoveringServer(async_mode="aiohttp", async_handlers=False)
    ran: list[str] = []

    @sio.on("disconnect", namespace="/other")
    async def on_disconnect(*_: object) -> None:
        ran.append("disconnect")

    @sio.on("hello", namespace="/other")
    async def on_hello(*_: object) -> str:
        ran.append("hello")
        return "hi"

    sent: list[Any] = []

    async def capture(eio_sid: str, pkt: Any) -> None:
        sent.append(pkt)

    sio._send_packet = capture  # type: ignore[method-assign]
    await sio.manager.connect("eio1", "/other")
    await sio._handle_event("eio1", "/other", 7, ["disconnect", "client namespace disconnect"])
    await sio._handle_event("eio1", "/other", 8, ["hello"])
    assert ran == ["hello"]
    assert [p.id for p in sent] == [7, 8]
    assert_error_ack(sent[0].data[0], "invalid_payload")
    assert sent[1].data == ["hi"]
