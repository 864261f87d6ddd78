"""Each fast path's switch (``CHATSVC_FAST_PATHS_OFF``) changes the code path the benchmark
measures: with the switch on the fast function runs and the stock one does not; off, the
reverse. A tiny in-process server on 127.0.0.1 (counting calls needs the same process),
raw Socket.IO clients over websocket (tests/support/raw_socketio.py: python-socketio's own
client would build packets in this process too), one message in a room of two."""

from __future__ import annotations

import ast
import asyncio
import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp.test_utils import TestServer
from engineio import async_socket
from socketio import packet as sio_packet

from chatsvc.app import SIO, create_app
from chatsvc.settings import FAST_PATHS, Settings, SettingsError
from chatsvc.transport import engine, lean_socket
from chatsvc.transport.broadcast import DirectEmitMixin
from chatsvc.transport.events import EventWorkers
from chatsvc.transport.fast_paths import NAMES, FastPaths
from chatsvc.transport.frames import FrameOnce
from chatsvc.transport.lean_socket import BoundedQueue, LeanQueue
from chatsvc.transport.sioserver import RecoveringServer
from chatsvc.transport.socketio_packet import SocketIOPacket
from tests.support.raw_socketio import RawSocket
from tests.support.servers import TEST_JWT_SECRET
from tests.support.tokens import token


def test_the_settings_and_the_switches_name_the_same_fast_paths() -> None:
    assert NAMES is FAST_PATHS  # one tuple, not two kept equal
    assert [f.replace("_", "-") for f in FastPaths.__dataclass_fields__] == list(NAMES)
    assert FastPaths() == FastPaths.without(())
    assert not any(vars(FastPaths.none()).values())
    assert FastPaths.without(["frame-once"]) == FastPaths(frame_once=False)
    with pytest.raises(ValueError, match="bogus"):
        FastPaths.without(["bogus"])


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "CHATSVC_JWT_SECRET": TEST_JWT_SECRET,
            "CHATSVC_DATA_DIR": str(tmp_path),
            "CHATSVC_STORE": "memory",
            "CHATSVC_GRPC_ENABLED": "false",
            "CHATSVC_HOST": "127.0.0.1",
            **env,
        }
    )


def test_settings_turn_all_or_some_fast_paths_off(tmp_path: Path) -> None:
    assert _settings(tmp_path).fast_paths_off == frozenset()
    assert _settings(tmp_path, CHATSVC_FAST_PATHS="false").fast_paths_off == frozenset(NAMES)
    off = _settings(tmp_path, CHATSVC_FAST_PATHS_OFF="lean-socket, direct-emit").fast_paths_off
    assert off == {"lean-socket", "direct-emit"}
    with pytest.raises(SettingsError, match="CHATSVC_FAST_PATHS_OFF"):
        _settings(tmp_path, CHATSVC_FAST_PATHS_OFF="frame-once,warp-drive")
    with pytest.raises(SettingsError, match="CHATSVC_FAST_PATHS"):
        _settings(tmp_path, CHATSVC_FAST_PATHS="sometimes")


def _counting(calls: Counter[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await fn(*args, **kwargs)

        return counted_async

    @functools.wraps(fn)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return fn(*args, **kwargs)

    return counted


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of the fast and the stock function of each fast path."""
    counts: Counter[str] = Counter()
    spies: list[tuple[Any, str, str]] = [
        # frame-once (below): bytes framed once and written to the transport, vs queued.
        (engineio.AsyncServer, "send_packet", "frame-once:stock send_packet"),
        # lean-socket: chatsvc's websocket handler vs python-engineio's.
        (engine, "lean_websocket_handler", "lean-socket:lean handler"),
        (async_socket.AsyncSocket, "_websocket_handler", "lean-socket:stock handler"),
        # lean-socket: the Engine.IO route calls python-engineio's handle_request directly.
        (socketio.AsyncServer, "handle_request", "lean-socket:socketio handle_request"),
        # direct-emit: the task-free loop vs python-socketio's emit.
        (DirectEmitMixin, "_send_each", "direct-emit:send_each"),
        (DirectEmitMixin, "_participants", "direct-emit:participants"),
        (socketio.AsyncManager, "emit", "direct-emit:stock emit"),
        # event-worker: a parked worker woken for the next event vs a new worker task.
        (EventWorkers, "_wake_worker", "event-worker:woken"),
        (EventWorkers, "_start_worker", "event-worker:new task"),
        # event-dispatch: the namespace handler in one step vs python-socketio's dispatch.
        (RecoveringServer, "_dispatch", "event-dispatch:direct"),
        (socketio.AsyncServer, "_handle_event_internal", "event-dispatch:stock"),
    ]
    for owner, attr, name in spies:
        monkeypatch.setattr(owner, attr, _counting(counts, name, getattr(owner, attr)))

    stock_write_frames = FrameOnce.write_frames

    def write_frames(self: Any, eio_sids: Any, data: bytes, now: float) -> list[str]:
        left: list[str] = stock_write_frames(self, eio_sids, data, now)
        counts["frame-once:written"] += len(eio_sids) - len(left)
        return left

    monkeypatch.setattr(FrameOnce, "write_frames", write_frames)

    # receive-packet: the message handler called straight from receive_packet, vs through
    # AsyncSocket.receive for a MESSAGE packet.
    stock_receive = async_socket.AsyncSocket.receive

    async def receive(self: Any, pkt: Any) -> Any:
        if pkt.packet_type == engineio.packet.MESSAGE:
            counts["receive-packet:stock receive"] += 1
        return await stock_receive(self, pkt)

    monkeypatch.setattr(async_socket.AsyncSocket, "receive", receive)
    real_receive_packet = lean_socket.receive_packet

    async def receive_packet(sock: Any, p: Any) -> None:
        if sock.server.inline_message_handler() is not None and isinstance(p, str) and p[:1] == "4":
            counts["receive-packet:direct"] += 1
        await real_receive_packet(sock, p)

    monkeypatch.setattr(lean_socket, "receive_packet", receive_packet)

    # packet-serializer: SocketIOPacket's data_is_binary vs python-socketio's.
    stock_binary = sio_packet.Packet.data_is_binary.__func__  # type: ignore[attr-defined]
    ours_binary = SocketIOPacket.data_is_binary.__func__  # type: ignore[attr-defined]

    def stock(cls: Any, data: Any) -> bool:
        if cls is not SocketIOPacket:
            counts["packet-serializer:stock"] += 1
        return bool(stock_binary(cls, data))

    def ours(cls: Any, data: Any) -> bool:
        counts["packet-serializer:ours"] += 1
        return bool(ours_binary(cls, data))

    monkeypatch.setattr(sio_packet.Packet, "data_is_binary", classmethod(stock))
    monkeypatch.setattr(SocketIOPacket, "data_is_binary", classmethod(ours))
    return counts


async def _one_message(settings: Settings) -> tuple[list[str], Any]:
    """alice and bob join a room over websocket, alice sends, bob receives. Returns what
    bob received and the server."""
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as http:
            alice = await RawSocket.open(http, base, "websocket")
            bob = await RawSocket.open(http, base, "websocket")
            try:
                for user, sock in (("alice", alice), ("bob", bob)):
                    assert "sid" in await sock.connect({"token": token(user)})
                    ack = await sock.call("join", {"room": "fast"})
                    assert ack["ok"] is True, ack
                ack = await alice.call("message", {"room": "fast", "text": "hello"})
                assert ack["ok"] is True, ack
                got = await bob.event("message")
            finally:
                await alice.close()
                await bob.close()
        return [got[0]["text"]], app[SIO]
    finally:
        await server.close()


#: For each fast path: the counter its fast function bumps, and its stock function's.
PATHS = {
    "frame-once": ("frame-once:written", "frame-once:stock send_packet"),
    "lean-socket": ("lean-socket:lean handler", "lean-socket:stock handler"),
    "receive-packet": ("receive-packet:direct", "receive-packet:stock receive"),
    "packet-serializer": ("packet-serializer:ours", "packet-serializer:stock"),
    "direct-emit": ("direct-emit:send_each", "direct-emit:stock emit"),
    "event-worker": ("event-worker:woken", "event-worker:new task"),
    "event-dispatch": ("event-dispatch:direct", "event-dispatch:stock"),
}


def test_every_fast_path_is_covered() -> None:
    assert sorted(PATHS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
async def test_each_switch_changes_the_measured_code_path(
    name: str, calls: Counter[str], tmp_path: Path
) -> None:
    fast, stock = PATHS[name]
    got, _ = await _one_message(_settings(tmp_path / "on"))
    assert got == ["hello"]
    assert calls[fast] > 0, (name, "on", dict(calls))
    stock_when_on = calls[stock]
    # python-engineio queues some packets either way (the OPEN...); a connection's first
    # packets (CONNECT, join) start its worker either way.
    if name not in ("frame-once", "event-worker"):
        assert stock_when_on == 0, (name, "on", dict(calls))

    calls.clear()
    got, _ = await _one_message(_settings(tmp_path / "off", CHATSVC_FAST_PATHS_OFF=name))
    assert got == ["hello"]  # same behaviour, the stock way
    assert calls[fast] == 0, (name, "off", dict(calls))
    assert calls[stock] > stock_when_on, (name, "off", dict(calls))


async def test_lean_socket_routes_requests_past_python_socketios_delegation(
    calls: Counter[str], tmp_path: Path
) -> None:
    """Its coroutine would be held by every websocket for the connection's life."""
    got, _ = await _one_message(_settings(tmp_path / "on"))
    assert got == ["hello"] and calls["lean-socket:socketio handle_request"] == 0, dict(calls)
    calls.clear()
    got, _ = await _one_message(_settings(tmp_path / "off", CHATSVC_FAST_PATHS_OFF="lean-socket"))
    assert got == ["hello"] and calls["lean-socket:socketio handle_request"] >= 2, dict(calls)


def _request_stacks() -> list[list[str]]:
    """For each task aiohttp runs a request's handler in: the coroutines it is suspended in,
    outermost first (for a websocket: the frames its connection holds while idle)."""
    stacks = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        code = getattr(coro, "cr_code", None)
        if code is None or code.co_qualname != "RequestHandler._handle_request":
            continue
        names = []
        while coro is not None and hasattr(coro, "cr_code"):
            names.append(coro.cr_code.co_qualname)
            coro = coro.cr_await
        stacks.append(names)
    return stacks


async def _idle_websocket_stack(settings: Settings, parked_in: str) -> tuple[list[str], dict[Any, str]]:
    """The coroutines an idle, connected chatsvc websocket holds (the whole app: the request
    id middleware, the drain gate, the Engine.IO route), once ``parked_in`` is among them;
    and the type of each room of the namespace its socket is in (its own, its user's)."""
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    stacks: list[list[str]] = []
    try:
        async with aiohttp.ClientSession() as http:
            sock = await RawSocket.open(http, str(server.make_url("")).rstrip("/"), "websocket")
            try:
                assert "sid" in await sock.connect({"token": token("alice")})
                for _ in range(200):  # until the reader is parked again after the CONNECT
                    stacks = _request_stacks()
                    if any(parked_in in stack for stack in stacks):
                        break
                    await asyncio.sleep(0.01)
                rooms = {
                    room if room is None or room.startswith("@u:") else "sid": type(members).__name__
                    for room, members in app[SIO].manager.rooms["/"].items()
                }
            finally:
                await sock.close()
    finally:
        await server.close()
    assert len(stacks) == 1 and parked_in in stacks[0], stacks
    return stacks[0], rooms


async def test_an_idle_lean_websocket_holds_aiohttps_frames_and_one_of_chatsvcs(tmp_path: Path) -> None:
    """Between aiohttp's request task and the websocket's reader, one chatsvc coroutine:
    the request id middleware, the drain gate and EngineIOServer.handle_request return the
    awaitable they hand on (chatsvc.transport.frameless), and lean_websocket_handler runs
    the handshake and the socket's life in one frame. Reverted: python-engineio's stack."""
    held, rooms = await _idle_websocket_stack(_settings(tmp_path / "on"), "WebSocketResponse.receive")
    assert held == [
        "RequestHandler._handle_request",
        "Application._handle",
        "_fix_request_current_app.<locals>.impl",  # aiohttp's own, with any middleware
        "lean_websocket_handler",
        "WebSocketResponse.receive",
    ], held
    off = _settings(tmp_path / "off", CHATSVC_FAST_PATHS_OFF="lean-socket")
    held, rooms_off = await _idle_websocket_stack(off, "AsyncSocket._websocket_handler")
    assert "lean_websocket_handler" not in held and "AsyncServer._handle_connect" in held, held
    # Its own room and its user's: one dict each, not python-socketio's bidict (whose
    # inverse only the namespace's room of every socket, None, needs).
    assert rooms == {None: "bidict", "sid": "LeanRoom", "@u:alice": "LeanRoom"}, rooms
    assert rooms_off == {None: "bidict", "sid": "bidict", "@u:alice": "bidict"}, rooms_off


async def test_all_off_runs_the_stock_paths_only(calls: Counter[str], tmp_path: Path) -> None:
    got, sio = await _one_message(_settings(tmp_path, CHATSVC_FAST_PATHS="false"))
    assert got == ["hello"]
    for name, (fast, stock) in PATHS.items():
        assert calls[stock] > 0 and calls[fast] == 0, (name, dict(calls))
    assert sio.packet_class is sio_packet.Packet
    assert not sio.eio.lean and not sio.eio.frame_once and not sio.eio.fast_receive
    assert sio.manager.direct_emit is False
    assert sio.keep_workers is False and sio.fast_dispatch is False


async def test_the_queue_bound_holds_either_way(tmp_path: Path) -> None:
    for env, kind in (({}, LeanQueue), ({"CHATSVC_FAST_PATHS": "false"}, BoundedQueue)):
        app = create_app(_settings(tmp_path, CHATSVC_MAX_QUEUED_PACKETS="16", **env))
        eio = app[SIO].eio
        overflowed: list[Any] = []
        eio.queue_overflowed = overflowed.append
        queue = eio.create_queue()
        assert type(queue) is kind
        for i in range(17):
            queue.put_nowait(i)
        assert overflowed == [queue], kind
        assert queue.discard() == 17


def test_the_benchmark_turns_the_same_fast_paths_off_through_the_setting() -> None:
    """bench/harness.py and bench/launch_chatsvc.py name the fast paths as the settings do
    (they pass them as CHATSVC_FAST_PATHS_OFF, not by patching code)."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    for name in ("harness.py", "launch_chatsvc.py"):
        source = (bench / name).read_text()
        named = [
            ast.literal_eval(node.value)
            for node in ast.parse(source).body
            if isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["FAST_PATHS"]
        ]
        assert named == [FAST_PATHS], name
        assert "CHATSVC_FAST_PATHS_OFF" in source, name
        assert "engineio_internals" not in source and ".emit = " not in source, name


async def test_direct_emit_reads_a_rooms_members_without_python_socketios_generator(
    calls: Counter[str], tmp_path: Path
) -> None:
    got, _ = await _one_message(_settings(tmp_path / "on"))
    assert got == ["hello"]
    assert calls["direct-emit:participants"] > 0
    calls.clear()
    got, _ = await _one_message(_settings(tmp_path / "off", CHATSVC_FAST_PATHS_OFF="direct-emit"))
    assert got == ["hello"]  # python-socketio's emit, which walks get_participants itself
    assert calls["direct-emit:participants"] == 0
    assert calls["direct-emit:stock emit"] > 0
