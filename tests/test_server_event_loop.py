"""``chatsvc.server.run``: uvloop when it is installed, asyncio's loop otherwise; GC tuned."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys

import pytest

from chatsvc import server
from chatsvc.settings import Settings
from tests.support.servers import TEST_JWT_SECRET


def run_recording_loop(monkeypatch: pytest.MonkeyPatch) -> str:
    seen: list[str] = []

    async def fake_serve(settings: Settings) -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    monkeypatch.setattr(server, "serve", fake_serve)
    monkeypatch.setattr(server, "tune_gc", lambda: seen.append("tuned"))
    server.run(Settings.from_env({"CHATSVC_JWT_SECRET": TEST_JWT_SECRET}))
    assert seen[0] == "tuned" and len(seen) == 2
    return seen[1]


def test_uses_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    assert run_recording_loop(monkeypatch).startswith(expected)


def test_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert server.event_loop_factory() is None
    assert run_recording_loop(monkeypatch).startswith("asyncio")


def test_tune_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        server.tune_gc()
        assert gc.get_threshold() == server.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
