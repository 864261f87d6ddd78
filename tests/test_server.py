"""The process as a whole: restart keeps history, SIGTERM drains, /metrics, the web client."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request
from pathlib import Path

import aiohttp

from tests.support.clients import TRANSPORTS, ClientPool, until
from tests.support.servers import ServerProcess, base_env, free_port
from tests.support.tokens import token

DRAIN_SECONDS = 3.0


def start(tmp_path: Path, name: str, data_dir: Path | None = None, **env: str) -> ServerProcess:
    full = base_env(data_dir or tmp_path / f"{name}-data", free_port())
    full["CHATSVC_SHUTDOWN_TIMEOUT"] = "1"
    full.update(env)
    return ServerProcess(full, tmp_path / f"{name}.log").start()


async def test_history_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "shared-data"
    first = start(tmp_path, "before", data)
    try:
        async with ClientPool() as clients:
            alice = await clients.connect(first.url, token("alice"))
            await alice.ok("join", {"room": "stock:005930"})
            sent = [
                (
                    await alice.ok(
                        "message", {"room": "stock:005930", "text": f"m{i}", "client_msg_id": f"k{i}"}
                    )
                )["message"]
                for i in range(3)
            ]
    finally:
        assert first.stop() == 0

    second = start(tmp_path, "after", data)
    try:
        async with ClientPool() as clients:
            bob = await clients.connect(second.url, token("bob"), transport="polling")
            join = await bob.ok("join", {"room": "stock:005930", "since": sent[0]["id"]})
            assert join["messages"] == sent[1:]
            assert join["unread"] == 3
            history = await bob.ok("history", {"room": "stock:005930"})
            assert history["messages"] == sent[::-1]
            # Idempotency keys survive too, and new ids still sort after the old ones.
            alice = await clients.connect(second.url, token("alice"))
            await alice.ok("join", {"room": "stock:005930"})
            retry = await alice.ok("message", {"room": "stock:005930", "text": "m2", "client_msg_id": "k2"})
            assert retry["duplicate"] is True and retry["message"] == sent[2]
            fresh = await alice.ok("message", {"room": "stock:005930", "text": "new"})
            assert fresh["message"]["id"] > sent[-1]["id"]
    finally:
        assert second.stop() == 0


async def test_sigterm_drains_connected_clients(tmp_path: Path) -> None:
    """Clients are told, leave, and the process exits without waiting out its bound."""
    bound = 20.0
    server = start(tmp_path, "drain", CHATSVC_SHUTDOWN_TIMEOUT=str(bound))
    try:
        async with ClientPool() as clients:
            connected = [
                await clients.connect(server.url, token(f"user{i}"), transport=TRANSPORTS[i % 2])
                for i in range(4)
            ]
            for client in connected:
                await client.ok("join", {"room": "draining"})
            assert server.http_status("/readyz") == 200

            started = time.monotonic()
            server.signal(signal.SIGTERM)
            ends = await asyncio.gather(*(c.next("session_end", within=10) for c in connected))
            for end in ends:
                assert end == {"code": "shutting_down", "message": end["message"], "reconnect": True}
                assert end["message"]
            async with asyncio.timeout(10):
                await asyncio.gather(*(c.disconnected.wait() for c in connected))
            code = await asyncio.to_thread(server.wait_exit, bound + 10)
            elapsed = time.monotonic() - started
        assert code == 0, server.log_tail()
        # Regression: websockets used to be held until aiohttp's shutdown timeout, twice.
        assert elapsed < bound / 2, f"exit took {elapsed:.1f}s although every client had left"
        log = server.log_text()
        assert "draining 4 connection(s)" in log
        assert "Traceback" not in log
    finally:
        server.stop()


async def test_sigterm_drain_closes_websockets_itself(tmp_path: Path) -> None:
    """A websocket gets session_end, then the Engine.IO close, then the server closes the
    websocket itself: a client that ignores being told to leave cannot hold the drain, and
    no Socket.IO DISCONNECT is sent (socket.io-client reconnects by itself after this)."""
    server = start(tmp_path, "stubborn", CHATSVC_SHUTDOWN_TIMEOUT=str(DRAIN_SECONDS))
    try:
        url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, autoclose=False) as ws:
            assert (await ws.receive_str(timeout=5)).startswith("0{")
            await ws.send_str("40" + json.dumps({"token": token("stubborn")}))
            assert (await ws.receive_str(timeout=5)).startswith("40{")

            started = time.monotonic()
            server.signal(signal.SIGTERM)
            frames = [await ws.receive_str(timeout=5) for _ in range(2)]
            assert frames[0].startswith('42["session_end",{"code":"shutting_down"'), frames
            assert frames[1:] == ["1"]  # no "41"
            closing = await ws.receive(timeout=5)
            assert closing.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
        code = await asyncio.to_thread(server.wait_exit, 30)
        elapsed = time.monotonic() - started
        assert code == 0, server.log_tail()
        assert elapsed < DRAIN_SECONDS, f"exit took {elapsed:.1f}s"
    finally:
        server.stop()


async def test_sigterm_drain_is_bounded_when_a_client_stays(tmp_path: Path) -> None:
    """A long-polling client that stops polling holds its session_end: the drain waits for
    it up to the bound; meanwhile the replica reports not ready and refuses new Engine.IO
    sessions with 503 shutting_down."""
    server = start(tmp_path, "stubborn", CHATSVC_SHUTDOWN_TIMEOUT=str(DRAIN_SECONDS))
    base = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base) as opened:
                sid = json.loads((await opened.text())[1:])["sid"]
            polling = f"{base}&sid={sid}"
            async with session.post(polling, data="40" + json.dumps({"token": token("stubborn")})) as sent:
                assert sent.status == 200
            async with session.get(polling) as connected:
                assert (await connected.text()).startswith("40{")

            started = time.monotonic()
            server.signal(signal.SIGTERM)  # and the client never polls again
            await until(lambda: server.http_status("/readyz") == 503, "/readyz 503 while draining")
            status, body = server.http_json("/readyz")
            assert status == 503 and body["failing"] == {"server": "draining"}  # type: ignore[index]
            # New Engine.IO sessions are refused with 503 (socket.io-client retries those,
            # while a Socket.IO connect_error would end its reconnecting).
            async with session.get(base) as refused:
                assert refused.status == 503
                assert (await refused.json())["code"] == "shutting_down"
        code = await asyncio.to_thread(server.wait_exit, 30)
        elapsed = time.monotonic() - started
        assert code == 0, server.log_tail()
        assert elapsed < DRAIN_SECONDS + 8, f"exit took {elapsed:.1f}s with a drain bound of {DRAIN_SECONDS}s"
        assert elapsed > 2, "the drain did not wait for the client at all"
    finally:
        server.stop()


async def test_sigterm_with_no_clients_exits_promptly(tmp_path: Path) -> None:
    server = start(tmp_path, "idle")
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 15) == 0
    assert "stopped" in server.log_text()


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search(f"^{pattern}$", text, re.MULTILINE)
    assert match, f"{name}{{{label_text}}} not in /metrics"
    return float(match.group(1))


def fetch(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(resp.status), resp.headers.get("Content-Type", ""), resp.read().decode()


async def test_metrics_count_what_happens(tmp_path: Path) -> None:
    server = start(tmp_path, "metrics")
    try:
        async with ClientPool() as clients:
            alice = await clients.connect(server.url, token("alice"))
            bob = await clients.connect(server.url, token("bob"), transport="polling")
            for client in (alice, bob):
                await client.ok("join", {"room": "m1"})
            await alice.ok("join", {"room": "m2"})
            for i in range(3):
                await alice.ok("message", {"room": "m1", "text": f"{i}"})
            await bob.ok("history", {"room": "m1"})
            await bob.error("message", {"room": "elsewhere", "text": "x"})
            await clients.refused(server.url, "garbage")
            await clients.refused(server.url, None)

            status, content_type, text = await asyncio.to_thread(fetch, f"{server.url}/metrics")
            assert status == 200 and content_type.startswith("text/plain")
            assert metric(text, "chatsvc_connections") == 2
            assert metric(text, "chatsvc_rooms", scope="local") == 2
            assert metric(text, "chatsvc_rooms", scope="cluster") == 2
            assert metric(text, "chatsvc_messages_in_total") == 3
            assert metric(text, "chatsvc_messages_out_total") == 3
            assert metric(text, "chatsvc_errors_total", code="not_in_room") == 1
            assert metric(text, "chatsvc_connect_rejections_total", code="token_invalid") == 1
            assert metric(text, "chatsvc_connect_rejections_total", code="token_missing") == 1
            assert metric(text, "chatsvc_store_latency_seconds_count", op="append") == 3
            assert metric(text, "chatsvc_store_latency_seconds_count", op="history") == 1
            assert "chatsvc_store_latency_seconds_bucket" in text

        async def no_connections() -> bool:
            return (
                metric((await asyncio.to_thread(fetch, f"{server.url}/metrics"))[2], "chatsvc_connections")
                == 0
            )

        await until(no_connections, "chatsvc_connections back to 0")
    finally:
        server.stop()


async def test_demo_page(tmp_path: Path) -> None:
    server = start(tmp_path, "page")
    try:
        status, content_type, body = await asyncio.to_thread(fetch, f"{server.url}/")
        assert status == 200 and content_type.startswith("text/html")
        assert "/app/vendor/socket.io/socket.io.min.js" in body  # served here, not from a CDN
        _, _, connection = await asyncio.to_thread(fetch, f"{server.url}/app/js/connection.js")
        assert "recover: true" in connection and "socket.recovered" in connection  # opts into recovery
    finally:
        server.stop()
