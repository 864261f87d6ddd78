"""Helpers of the Kafka bus tests: replica environments, broker control, a recording client."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import socketio

from tests.support.services import REPO
from tests.support.tokens import token

EVENTS = ("message", "typing", "read", "presence", "session_end", "message_edited", "message_deleted")
WAIT_SECONDS = 20.0


def new_topic() -> str:
    """A topic of its own per test, so no test sees another's records."""
    return f"chatsvc.test.{uuid.uuid4().hex[:12]}"


def replica_env(kafka: dict[str, str], *, tls: bool, topic: str, **extra: str) -> dict[str, str]:
    """Env of a chatsvc replica on the test broker's PLAINTEXT or mutual-TLS listener."""
    env = {
        "KAFKA_BROKERS": kafka["KAFKA_TEST_SSL" if tls else "KAFKA_TEST_PLAINTEXT"],
        "KAFKA_TOPIC": topic,
        "KAFKA_RETRY_BACKOFF_MS": "200",
        "KAFKA_CONNECT_RETRIES": "3",
    }
    if tls:
        env |= {
            "KAFKA_SSL_CA_CERT": kafka["KAFKA_TEST_CA"],
            "KAFKA_SSL_CLIENT_CERT": kafka["KAFKA_TEST_CLIENT_CERT"],
            "KAFKA_SSL_CLIENT_KEY": kafka["KAFKA_TEST_CLIENT_KEY"],
        }
    return env | extra


def kafka_script(command: str, timeout: float = 180.0) -> None:
    """``scripts/kafka COMMAND``, bounded; fail with its output if it fails."""
    _service_script("kafka", command, timeout)


def cassandra_script(command: str, timeout: float = 300.0) -> None:
    """``scripts/cassandra COMMAND``, bounded; fail with its output if it fails."""
    _service_script("cassandra", command, timeout)


def _service_script(script: str, command: str, timeout: float) -> None:
    done = subprocess.run(
        [str(REPO / "scripts" / script), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"scripts/{script} {command} failed:\n{done.stdout}\n{done.stderr}"


class ChatClient:
    """A python-socketio client that records every server event, with bounded waits."""

    def __init__(self, url: str, sub: str) -> None:
        self.url = url
        self.sub = sub
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.disconnected = False
        self._changed = asyncio.Condition()
        for event in EVENTS:
            self.sio.on(event, self._recorder(event))
        self.sio.on("disconnect", self._on_disconnect)

    def _recorder(self, event: str) -> Callable[[Any], Any]:
        async def record(data: Any) -> None:
            async with self._changed:
                self.events[event].append(data)
                self._changed.notify_all()

        return record

    async def _on_disconnect(self, *_: Any) -> None:
        async with self._changed:
            self.disconnected = True
            self._changed.notify_all()

    async def connect(self) -> ChatClient:
        await self.sio.connect(
            self.url, auth={"token": token(self.sub)}, transports=["websocket"], wait_timeout=10
        )
        return self

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid("/")
        assert sid is not None
        return str(sid)

    async def call(self, event: str, data: dict[str, Any], *, ok: bool = True) -> dict[str, Any]:
        """Send an event and return its ack (asserting ``ok`` unless told otherwise)."""
        ack = await self.sio.call(event, data, timeout=15)
        assert isinstance(ack, dict)
        if ok:
            assert ack.get("ok") is True, ack
        return ack

    async def wait_until(
        self, what: str, predicate: Callable[[], bool], within: float = WAIT_SECONDS
    ) -> None:
        """Wait (bounded) until ``predicate()`` holds; fail naming ``what`` and the events seen."""
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(
                f"{self.sub}: {what} did not happen within {within}s; events: {dict(self.events)}"
            ) from None

    async def wait_event(
        self, event: str, match: Callable[[dict[str, Any]], bool], within: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        """The first recorded ``event`` matching ``match`` (waiting for it, bounded)."""

        def found() -> bool:
            return any(match(e) for e in self.events[event])

        await self.wait_until(f"a matching {event!r} event", found, within)
        return next(e for e in self.events[event] if match(e))

    def texts(self, author: str) -> list[str]:
        """Texts of the ``message`` events received from ``author``, in arrival order."""
        return [m["text"] for m in self.events["message"] if m["user"]["id"] == author]

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


def log_lines(path: Path, needle: str) -> list[str]:
    """Lines of a server log containing ``needle``."""
    return [line for line in path.read_text(errors="replace").splitlines() if needle in line]
