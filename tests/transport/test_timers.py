"""Expiries: every connection's token deadline on one loop timer."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from chatsvc.app import NAMESPACE, create_app
from chatsvc.settings import Settings
from chatsvc.transport.timers import Expiries
from tests.support.servers import TEST_JWT_SECRET
from tests.support.tokens import token


async def test_each_connection_expires_once_at_its_deadline_in_order() -> None:
    expired: list[tuple[str, float]] = []
    expiries = Expiries(lambda sid: expired.append((sid, time.time())), resolution=0.02)
    start = time.time()
    expiries.set("late", start + 0.15)
    expiries.set("early", start + 0.05)
    expiries.set("never", None)
    await asyncio.sleep(0.3)
    assert [sid for sid, _ in expired] == ["early", "late"]
    for sid, at in expired:
        due = start + (0.05 if sid == "early" else 0.15)
        assert due <= at <= due + 0.1  # never early; late by at most the resolution (and the loop)
    assert len(expiries) == 0
    expiries.close()


async def test_a_moved_or_discarded_deadline_does_not_fire_at_the_old_time() -> None:
    expired: list[str] = []
    expiries = Expiries(expired.append, resolution=0.02)
    now = time.time()
    expiries.set("refreshed", now + 0.05)
    expiries.set("gone", now + 0.05)
    expiries.set("refreshed", now + 0.2)  # a refresh moved it later
    expiries.discard("gone")
    await asyncio.sleep(0.12)
    assert expired == []
    await asyncio.sleep(0.2)
    assert expired == ["refreshed"]
    expiries.set("sooner", time.time() + 10)
    expiries.set("sooner", time.time() + 0.03)  # moved earlier: the timer is re-armed for it
    await asyncio.sleep(0.15)
    assert expired == ["refreshed", "sooner"]
    expiries.close()


async def test_memory_stays_proportional_to_the_live_connections() -> None:
    expiries = Expiries(lambda sid: None)
    far = time.time() + 3600
    for i in range(5000):
        expiries.set(f"s{i}", far)
        expiries.discard(f"s{i}")
    assert len(expiries) == 0
    assert len(expiries._heap) <= 64 + 1  # stale entries are compacted away
    for i in range(100):
        expiries.set(f"live{i}", far + i)
    for _ in range(1000):
        expiries.set("live0", far)  # refreshed over and over
    assert len(expiries._heap) <= 2 * 100 + 64 + 1
    expiries.close()


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    expired: list[str] = []

    def on_expired(sid: str) -> None:
        if sid == "bad":
            raise RuntimeError("boom")
        expired.append(sid)

    expiries = Expiries(on_expired, resolution=0.01)
    now = time.time()
    expiries.set("bad", now)
    expiries.set("good", now)
    await asyncio.sleep(0.1)
    assert expired == ["good"]
    expiries.close()


async def test_the_app_keeps_each_sockets_deadline_and_stops_the_timer_at_shutdown(tmp_path: Path) -> None:
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
    expiries = app[NAMESPACE]._expiries
    async with TestClient(TestServer(app)) as client:
        async with client.ws_connect("/socket.io/?EIO=4&transport=websocket") as ws:
            assert (await ws.receive_str(timeout=5)).startswith("0{")
            await ws.send_str("40" + json.dumps({"token": token("alice", ttl=3600)}))
            assert (await ws.receive_str(timeout=5)).startswith("40{")
            assert len(expiries) == 1 and expiries._timer is not None
            await ws.send_str("1")  # Engine.IO close
        for _ in range(100):
            if not len(expiries):
                break
            await asyncio.sleep(0.02)
        assert len(expiries) == 0  # forgotten at disconnect
    assert expiries._timer is None  # and no timer outlives the app
