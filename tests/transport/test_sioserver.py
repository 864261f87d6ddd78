"""The recovery wire form, frame by frame, on a real server; and the python-socketio /
python-engineio internals chatsvc/transport/sioserver.py relies on (this fails loudly when an
upgrade changes them: re-read that module's docstring, adapt it, then the pins)."""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer
from socketio import base_manager

from chatsvc.transport.engine import EngineIOServer
from chatsvc.transport.http_state import ENVIRON_KEPT
from chatsvc.transport.sioserver import RecoveringServer, _EngineServer
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token


def test_pinned_versions_and_internals() -> None:
    params = list(inspect.signature(socketio.AsyncServer._handle_connect).parameters)
    assert params == ["self", "eio_sid", "namespace", "data"]
    assert list(inspect.signature(socketio.AsyncServer._send_packet).parameters) == ["self", "eio_sid", "pkt"]
    # The sid of a new Socket.IO session comes from eio.generate_id() in pre_connect.
    assert "self.server.eio.generate_id()" in inspect.getsource(base_manager.BaseManager.pre_connect)
    assert "{'sid': sid}" in inspect.getsource(socketio.AsyncServer._handle_connect)
    server = RecoveringServer(async_mode="aiohttp")
    assert isinstance(server.eio, _EngineServer) and isinstance(server.eio, engineio.AsyncServer)
    # One chain: the broadcast path's frame-once fast path works with recovery.
    assert isinstance(server.eio, EngineIOServer)
    server.eio.next_id = "chosen"
    assert server.eio.generate_id() == "chosen"
    assert server.eio.generate_id() != "chosen"
    # close_transport's websocket wake-up: the writer ends on a None in the queue.
    writer = inspect.getsource(engineio.async_socket.AsyncSocket._websocket_handler)
    assert "if not packets:" in writer and "await ws.close()" in writer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("wire"), CHATSVC_RATE_LIMIT_PER_SECOND="1000", CHATSVC_RATE_LIMIT_BURST="1000"
    ) as running:
        yield running


class Raw:
    """A websocket speaking Engine.IO/Socket.IO frames by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def connect(self, auth: dict[str, Any]) -> dict[str, Any]:
        assert (await self.ws.receive_str(timeout=5)).startswith("0{")
        await self.ws.send_str("40" + json.dumps(auth))
        reply = await self.ws.receive_str(timeout=5)
        assert reply.startswith("40{"), reply
        return json.loads(reply[2:])  # type: ignore[no-any-return]

    async def event(self, name: str) -> list[Any]:
        """The arguments of the next ``name`` event (answering pings on the way)."""
        while True:
            frame = await self.ws.receive_str(timeout=5)
            if frame == "2":
                await self.ws.send_str("3")
            elif frame.startswith("42"):
                data = json.loads(frame[2:])
                if data[0] == name:
                    return data[1:]  # type: ignore[no-any-return]

    async def call(self, ack_id: int, event: str, data: Any) -> Any:
        await self.ws.send_str(f"42{ack_id}" + json.dumps([event, data]))
        while True:
            frame = await self.ws.receive_str(timeout=5)
            if frame.startswith(f"43{ack_id}"):
                return json.loads(frame[2 + len(str(ack_id)) :])[0]


def offset(message: dict[str, Any]) -> str:
    """The recovery offset of a message: its position, then its room."""
    return f"{message['pos']}:{message['room']}"


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[Any]:
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:

        async def open_raw() -> Raw:
            return Raw(await session.ws_connect(url, autoclose=False))

        yield open_raw


async def test_wire_form_opt_in_and_one_use_recovery(server: ServerProcess, raw: Any) -> None:
    room = f"wire-{uuid.uuid4().hex[:8]}"
    plain = await raw()
    assert set(await plain.connect({"token": token("plain")})) == {"sid"}  # unchanged
    first = await raw()
    hello = await first.connect({"token": token("dora"), "recover": True})
    assert set(hello) == {"sid", "pid"} and len(hello["pid"]) == 32
    for client in (plain, first):
        assert (await client.call(1, "join", {"room": room}))["ok"] is True

    async with ClientPool() as pool:
        sender = await pool.connect(server.url, token("sender"))
        await sender.ok("join", {"room": room})
        one = (await sender.ok("message", {"room": room, "text": "one"}))["message"]
        assert await plain.event("message") == [one]  # no offset for the plain socket
        # The offset, last: the room-qualified stream position (chatsvc.chat.recovery_pos).
        assert await first.event("message") == [one, offset(one)]
        await first.ws.close()  # a drop, as far as the server can tell
        two = (await sender.ok("message", {"room": room, "text": "two"}))["message"]

        # Another user presenting the pid gets a fresh session; the session stays.
        thief = await raw()
        stolen = await thief.connect({"token": token("mallory"), "pid": hello["pid"], "offset": offset(one)})
        assert stolen["pid"] != hello["pid"] and stolen["sid"] != hello["sid"]

        back = await raw()
        again = await back.connect({"token": token("dora"), "pid": hello["pid"], "offset": offset(one)})
        assert again == hello  # same sid and pid: socket.recovered
        assert await back.event("message") == [two, offset(two)]  # replayed, after CONNECT
        three = (await sender.ok("message", {"room": room, "text": "three"}))["message"]
        assert await back.event("message") == [three, offset(three)]  # the room was rejoined

        # Dropped again, recovered again: the pid stays, the session is written afresh
        # at each drop (claims are one use: tests/store/test_recovery_contract.py).
        await back.ws.close()
        await asyncio.sleep(0.3)
        back = await raw()
        auth = {"token": token("dora"), "pid": hello["pid"], "offset": offset(three)}
        assert await back.connect(auth) == hello

        # A client-initiated disconnect ("41") keeps no session.
        await back.ws.send_str("41")
        await back.ws.close()
        late = await raw()
        after_close = await late.connect(auth)
        assert after_close["pid"] != hello["pid"]
        assert (await late.call(1, "message", {"room": room, "text": "x"}))["error"]["code"] == "not_in_room"


async def test_a_client_back_before_its_old_connection_died_recovers(server: ServerProcess, raw: Any) -> None:
    """A silent network loss: the server still holds the old websocket when the client
    reconnects with its pid. The old connection is ended and its session recovered."""
    room = f"wire-{uuid.uuid4().hex[:8]}"
    old = await raw()
    hello = await old.connect({"token": token("erin"), "recover": True})
    assert (await old.call(1, "join", {"room": room}))["ok"] is True
    new = await raw()
    again = await new.connect({"token": token("erin"), "pid": hello["pid"]})
    assert again == hello
    closing = await old.ws.receive(timeout=5)
    while closing.type == aiohttp.WSMsgType.TEXT:  # e.g. a ping queued before the drop
        closing = await old.ws.receive(timeout=5)
    assert closing.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
    async with ClientPool() as pool:
        sender = await pool.connect(server.url, token("sender"))
        await sender.ok("join", {"room": room})
        sent = (await sender.ok("message", {"room": room, "text": "to the new connection"}))["message"]
        assert await new.event("message") == [sent, offset(sent)]


class _NoRecovery:
    """ConnectHooks that never recover: the plain connect path of RecoveringServer."""

    async def prepare_recovery(self, environ: dict[str, Any], auth: Any) -> str | None:
        return None

    def abandon_recovery(self, sid: str) -> None:
        pass

    async def after_connect(self, sid: str) -> None:
        pass

    def pid_for(self, sid: str) -> str | None:
        return None


@pytest.mark.parametrize(
    "transports", [["websocket"], ["polling", "websocket"]], ids=["websocket", "upgrade"]
)
async def test_a_connected_sockets_environ_keeps_only_what_is_read_again(transports: list[str]) -> None:
    """The handshake's headers are not kept for the socket's life; the ones a later CONNECT
    (token, origin) or the admin UI reads are, on both ways a client arrives."""
    sio = RecoveringServer(async_mode="aiohttp")
    sio.hooks = _NoRecovery()
    seen: dict[str, dict[str, Any]] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        seen["at_connect"] = dict(environ)

    app = web.Application()
    sio.attach(app)
    server = TestServer(app)
    await server.start_server()
    client = socketio.AsyncClient()
    try:
        headers = {"Authorization": "Bearer t0k", "User-Agent": "browser " * 40, "Cookie": "c=" + "x" * 500}
        await client.connect(str(server.make_url("/")), headers=headers, transports=transports)
        for _ in range(200):
            if client.transport() == "websocket" and sio.eio.websockets:
                break
            await asyncio.sleep(0.01)
        (eio_sid,) = sio.environ
        kept = sio.environ[eio_sid]
        assert set(kept) <= ENVIRON_KEPT
        assert kept["HTTP_AUTHORIZATION"] == "Bearer t0k"
        assert "QUERY_STRING" in kept and "REMOTE_ADDR" in kept
        assert "HTTP_COOKIE" not in kept and "HTTP_USER_AGENT" not in kept
        assert seen["at_connect"]["HTTP_AUTHORIZATION"] == "Bearer t0k"  # what the handshake reads
    finally:
        await client.disconnect()
        await server.close()


# -- event-dispatch: the same handler call and the same ack as python-socketio's path -----


class _Answers(socketio.AsyncNamespace):  # type: ignore[misc]
    """Answers each event with what its first argument names."""

    def __init__(self) -> None:
        super().__init__("/")
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []

    async def trigger_event(self, event: str, *args: Any) -> Any:
        self.calls.append((event, args[0], args[1:]))
        answers = {"none": None, "tuple": (1, "two"), "value": {"ok": True}}
        return answers.get(args[1], self.server.not_handled)


async def _dispatched(fast: bool) -> tuple[list[Any], list[str]]:
    server = RecoveringServer(async_mode="aiohttp", async_handlers=False)
    server.fast_dispatch = fast
    answers = _Answers()
    server.register_namespace(answers)
    server.manager.sid_from_eio_sid = lambda eio_sid, namespace: "s-" + eio_sid
    server.manager.is_connected = lambda sid, namespace: sid == "s-e1"
    sent: list[str] = []

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        sent.append(f"{eio_sid} {pkt.encode()}")

    server._send_packet = send_packet
    assert (server._direct_handler("/") is answers) is fast  # the path under test is taken
    for what in ("none", "tuple", "value", "unhandled"):
        await server._handle_event("e1", None, 7, ["ev", what, "x"])
    await server._handle_event("e1", "/", None, ["ev", "value"])  # no ack id: no ack
    await server._handle_event("e2", "/", 8, ["ev", "value"])  # not connected: dropped
    return answers.calls, sent


async def test_direct_dispatch_calls_and_acks_as_python_socketio_does() -> None:
    fast, stock = await _dispatched(True), await _dispatched(False)
    assert fast == stock
    calls, sent = fast
    assert [c[:2] for c in calls] == [("ev", "s-e1")] * 5
    assert calls[0][2] == ("none", "x")
    assert sent == ["e1 37[]", 'e1 37[1,"two"]', 'e1 37[{"ok":true}]']
