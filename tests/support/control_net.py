"""An in-process stand-in for the bus's control channel, for unit tests of cluster state.

Each replica gets a :class:`~chatsvc.chat.cluster.ControlRouter` whose ``publish`` puts a
JSON round-tripped copy of the message on every *other* replica's inbox; one task per
replica delivers its inbox in order (as one Kafka partition would). A test can take the
network down (publish raises ``BusUnavailable``), cut a replica off (its messages are
dropped, as if it had crashed) or drop a single message type.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from chatsvc.chat.cluster import ControlRouter
from chatsvc.errors import BusUnavailable

WAIT = 5.0


class ControlNet:
    """Routers of several fake replicas, wired together."""

    def __init__(self) -> None:
        self.routers: dict[str, ControlRouter] = {}
        self._inboxes: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.up = True
        self.cut: set[str] = set()
        self.drop_types: set[str] = set()
        self.sent: list[dict[str, Any]] = []

    def router(self, replica_id: str) -> ControlRouter:
        async def publish(message: dict[str, Any]) -> None:
            if not self.up:
                raise BusUnavailable("fake bus down")
            copy = json.loads(json.dumps(message))
            self.sent.append(copy)
            if replica_id in self.cut or copy.get("type") in self.drop_types:
                return
            for rid, inbox in self._inboxes.items():
                if rid != replica_id:
                    inbox.put_nowait(copy)

        router = ControlRouter(publish, replica_id)
        self.routers[replica_id] = router
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._inboxes[replica_id] = inbox
        self._tasks.append(asyncio.create_task(self._deliver(router, inbox)))
        return router

    async def _deliver(self, router: ControlRouter, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            message = await inbox.get()
            try:
                await router.dispatch(message)
            finally:
                inbox.task_done()

    async def settle(self) -> None:
        """Wait until every message published so far has been handled."""
        async with asyncio.timeout(WAIT):
            for inbox in self._inboxes.values():
                await inbox.join()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def eventually(check: Callable[[], Any], *, within: float = WAIT, what: str = "condition") -> None:
    """Poll ``check`` (sync or async) until it returns truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.01)
