"""Control traffic never waits behind events (issue 21; chatsvc/transport/events.py).

A real server process on 127.0.0.1 with a 1 s ping interval and 1 s ping timeout, and a
store made slow from outside: this test holds the write lock of the server's SQLite file
(``BEGIN IMMEDIATE``), so each append waits in SQLite's busy handler. Before the change a
connection's events were handled inline in its reader, so the PONG behind them was read
only after them and the socket was dropped at ping interval + timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatsvc.transport import events
from chatsvc.transport.events import EventWorkers
from chatsvc.transport.timers import CoarseTimers
from tests.support.clients import FAST_PATH_MODES, TRANSPORTS, ClientPool, fast_paths_env, running_server
from tests.support.raw_socketio import RawSocket
from tests.support.servers import ServerProcess
from tests.support.tokens import token

PENDING_MAX = 40
QUEUED = 30  # slow messages waiting behind the locked store
HOLD_SECONDS = 3.5  # over the 2 s (interval + timeout) after which a silent socket is dropped


@pytest.fixture(scope="module", params=FAST_PATH_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The control path is not a fast path: it holds with them all off too."""
    with running_server(
        tmp_path_factory.mktemp("events"),
        **fast_paths_env(request.param),
        CHATSVC_PING_INTERVAL="1",
        CHATSVC_PING_TIMEOUT="1",
        CHATSVC_MAX_PENDING_EVENTS=str(PENDING_MAX),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


@contextlib.contextmanager
def store_locked(server: ServerProcess) -> Iterator[None]:
    """Hold the write lock of the server's SQLite file (its appends wait, up to 5 s each)."""
    path = Path(server.env["CHATSVC_DATA_DIR"]) / "chatsvc.sqlite3"
    assert path.exists(), path
    db = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def _refused_count(server: ServerProcess) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith('chatsvc_bad_packets_total{reason="pending_full"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_socket_stays_connected_while_its_events_wait_on_a_slow_store(
    server: ServerProcess, transport: str
) -> None:
    room = f"slow-{transport}"
    async with ClientPool() as clients:
        alice = await clients.connect(server.url, token("alice"), transport=transport)
        await alice.ok("join", {"room": room})
        sid = alice.sio.get_sid()
        texts = [f"slow {i}" for i in range(QUEUED)]
        with store_locked(server):
            sends = [
                asyncio.ensure_future(alice.call("message", {"room": room, "text": t}, within=30))
                for t in texts
            ]
            started = time.monotonic()
            await asyncio.sleep(HOLD_SECONDS)
            # Several ping intervals later: still connected, its events still waiting.
            assert not alice.disconnected.is_set(), "dropped while its events waited"
            assert not any(s.done() for s in sends), "an ack came while the store was locked"
            assert time.monotonic() - started >= HOLD_SECONDS
        acks: list[Any] = await asyncio.gather(*sends)
        assert [a["ok"] for a in acks] == [True] * QUEUED, acks
        assert [a["message"]["text"] for a in acks] == texts  # acked in the order sent
        ids = [a["message"]["id"] for a in acks]
        assert ids == sorted(ids)  # and stored in that order
        assert not alice.disconnected.is_set()
        assert alice.sio.get_sid() == sid  # the same connection throughout
        page = await alice.ok("history", {"room": room, "limit": QUEUED})
        assert [m["text"] for m in reversed(page["messages"])] == texts


async def test_over_the_bound_events_are_refused_at_once_not_buffered(server: ServerProcess) -> None:
    room = "bounded"
    before = _refused_count(server)
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.open(http, server.url, "websocket")
        try:
            assert "sid" in await raw.connect({"token": token("bounded")})
            assert (await raw.call("join", {"room": room}))["ok"] is True
            sent = PENDING_MAX + 11
            with store_locked(server):
                # The first is taken by the worker (and waits in the store); PENDING_MAX more
                # wait in the queue; the last 10 are answered rate_limited at once, while the
                # store is still locked.
                ack_ids = [await raw.emit_raw(f'["message",{{"room":"{room}","text":"n0"}}]')]
                await asyncio.sleep(0.3)
                ack_ids += [
                    await raw.emit_raw(f'["message",{{"room":"{room}","text":"n{i}"}}]')
                    for i in range(1, sent)
                ]
                refused = []
                for ack_id in ack_ids[PENDING_MAX + 1 :]:
                    answer = await raw.ack(ack_id, within=2)
                    assert answer["ok"] is False and answer["error"]["code"] == "rate_limited", answer
                    refused.append(ack_id)
            accepted = [await raw.ack(ack_id, within=15) for ack_id in ack_ids[: PENDING_MAX + 1]]
            assert all(a["ok"] is True for a in accepted), accepted
            assert [a["message"]["text"] for a in accepted] == [f"n{i}" for i in range(PENDING_MAX + 1)]
            history = await raw.call("history", {"room": room, "limit": 100})
            assert len(history["messages"]) == PENDING_MAX + 1  # nothing refused was stored
        finally:
            await raw.close()
    assert _refused_count(server) - before == len(refused) == sent - PENDING_MAX - 1


# -- the worker and its queue, in process ------------------------------------------------


class Probe(EventWorkers):
    """EventWorkers whose packet handling waits for ``gate`` and records what it handled."""

    def __init__(self) -> None:
        super().__init__(async_mode="aiohttp")
        self.gate = asyncio.Event()
        self.handled: list[str] = []
        self.sent: list[str] = []
        self.refused: list[str] = []
        self.observe_refused = self.refused.append
        self.manager.sid_from_eio_sid = lambda eio_sid, namespace: "s-" + eio_sid
        self.manager.is_connected = lambda sid, namespace: True

    async def _process_eio_message(self, eio_sid: str, data: Any) -> None:
        await self.gate.wait()
        self.handled.append(data)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        self.sent.append(pkt.encode())


async def _spin(rounds: int = 50) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_packets_are_handled_in_order_by_one_worker_that_ends_when_idle() -> None:
    probe = Probe()
    probe.keep_workers = False  # fast path event-worker off: a worker per burst
    for i in range(5):
        await probe._handle_eio_message("e1", f'2["m",{i}]')
    assert probe.pending_events("e1") == 5 and probe.handled == []  # the reader did not wait
    probe.gate.set()
    await _spin()
    assert probe.handled == [f'2["m",{i}]' for i in range(5)]
    assert probe._pending == {}  # no worker, no queue left for an idle connection


async def test_a_worker_that_handled_events_parks_for_the_next_then_ends_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "WORKER_LINGER_SECONDS", 0.2)  # 5 s in production
    probe = Probe()
    probe._linger_timers = CoarseTimers(0.05, early=False)
    probe.gate.set()
    for i in range(3):
        await probe._handle_eio_message("e1", f'2["m",{i}]')
    await _spin()
    worker = probe._pending["e1"].task
    assert worker is not None and not worker.done()  # parked, not ended
    assert probe.pending_events("e1") == 0
    await probe._handle_eio_message("e1", '2["m",3]')  # the same task takes the next burst
    await _spin()
    assert probe._pending["e1"].task is worker
    assert probe.handled == [f'2["m",{i}]' for i in range(4)]
    # Nothing more: it ends after one to two linger periods.
    started = time.monotonic()
    await asyncio.wait_for(worker, timeout=10)
    assert time.monotonic() - started >= 0.1  # it did linger
    assert probe._pending == {} and probe.handled == [f'2["m",{i}]' for i in range(4)]


async def test_a_worker_ends_at_once_after_a_connect_so_a_silent_socket_holds_no_task() -> None:
    probe = Probe()
    probe.gate.set()
    await probe._handle_eio_message("e1", '0{"token":"t"}')
    await _spin()
    assert probe.handled == ['0{"token":"t"}'] and probe._pending == {}


async def test_a_packet_queued_as_the_linger_ends_is_still_handled() -> None:
    probe = Probe()
    probe.gate.set()
    await probe._handle_eio_message("e1", '2["m",0]')
    await _spin()
    pending = probe._pending["e1"]
    assert pending.wake is not None and not pending.wake.done()
    pending.touched = False
    probe._linger_check(pending)  # the check ends the worker ...
    await probe._handle_eio_message("e1", '2["m",1]')  # ... as a packet arrives
    await _spin()
    assert probe.handled == ['2["m",0]', '2["m",1]']
    assert probe.has_worker("e1")  # it handled the packet and parked again


async def test_settled_waits_for_the_queue_not_for_a_parked_worker() -> None:
    probe = Probe()
    await probe._handle_eio_message("e1", '2["m",0]')
    await probe._handle_eio_message("e1", '2["m",1]')
    waiting = asyncio.ensure_future(probe.settled("e1"))
    await _spin()
    assert not waiting.done()
    probe.gate.set()
    await asyncio.wait_for(waiting, timeout=5)
    assert probe.handled == ['2["m",0]', '2["m",1]'] and probe.has_worker("e1")


async def test_a_full_queue_refuses_with_rate_limited_and_buffers_nothing() -> None:
    probe = Probe()
    probe.pending_events_max = 2
    await probe._handle_eio_message("e1", '20["m",0]')
    await asyncio.sleep(0)  # the worker takes the first (and waits at the gate)
    await probe._handle_eio_message("e1", '21["m",1]')
    await probe._handle_eio_message("e1", '22["m",2]')
    await probe._handle_eio_message("e1", '23["m",3]')  # over the bound, with an ack id
    await probe._handle_eio_message("e1", '2["m",4]')  # over the bound, no ack id
    await probe._handle_eio_message("e1", "3[]")  # over the bound, not an event
    assert probe.pending_events("e1") == 2
    assert probe.refused == ["event", "event", "other"]
    assert len(probe.sent) == 1 and probe.sent[0].startswith('33[{"ok":false,"error":{"code":"rate_limited"')
    probe.gate.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert probe.handled == ['20["m",0]', '21["m",1]', '22["m",2]']


async def test_disconnect_cancels_the_worker_and_drops_the_queue_but_a_disconnect_packet() -> None:
    probe = Probe()
    await probe._handle_eio_message("e1", '2["m",0]')
    await asyncio.sleep(0)
    worker = probe._pending["e1"].task
    await probe._handle_eio_message("e1", '2["m",1]')
    await probe._handle_eio_message("e1", "1")
    probe.gate.set()  # handled at once from now on: only what disconnect hands over runs
    await probe._handle_eio_disconnect("e1", "transport close")
    await asyncio.sleep(0)
    assert worker is not None and worker.cancelled()
    assert probe.handled == ["1"]  # not the events queued behind the slow one
    assert probe.pending_events("e1") == 0 and probe._pending == {}


async def test_disconnect_cancels_a_parked_worker() -> None:
    probe = Probe()
    probe.gate.set()
    await probe._handle_eio_message("e1", '2["m",0]')
    await _spin()
    worker = probe._pending["e1"].task
    await probe._handle_eio_disconnect("e1", "transport close")
    await _spin()
    assert worker is not None and worker.cancelled() and probe._pending == {}
