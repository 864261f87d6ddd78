"""What the position-recovery tests (python-socketio and socket.io-client) share: every
kind of room-stream record posted by a real client, the stream sequence a socket saw, and
the two store changes that must force a clean resync (a new epoch, a raised floor)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import socketio

from tests.support.clients import ChatClient
from tests.support.servers import ServerProcess

#: The servers of the position-recovery scenarios (python-socketio and socket.io-client alike):
#: short pings, so a polling client that vanished is noticed within ~2 s.
ENV = {
    "CHATSVC_RATE_LIMIT_PER_SECOND": "1000",
    "CHATSVC_RATE_LIMIT_BURST": "1000",
    "CHATSVC_PING_INTERVAL": "1",
    "CHATSVC_PING_TIMEOUT": "1",
}
TRANSPORTS = ("websocket", "polling")
#: Live events that are room-stream records (each carries ``pos``).
STREAM_EVENTS = frozenset(
    {"message", "message_edited", "message_deleted", "message_updated", "reaction", "pinned", "unpinned"}
)


async def every_kind(bob: ChatClient, room: str, label: str, parent_id: str) -> list[dict[str, Any]]:
    """Post one of each room-stream record kind as ``bob`` (an admin: pins in a public
    room): messages, a reply (which also updates the parent's reply count), an edit, a
    reaction, a pin, an unpin and a delete. Returns the messages' acks."""
    posted = []
    for i in range(2):
        posted.append((await bob.ok("message", {"room": room, "text": f"{label} {i}"}))["message"])
    reply = {"room": room, "text": f"{label} reply", "reply_to": parent_id}
    posted.append((await bob.ok("message", reply))["message"])
    await bob.ok("edit", {"room": room, "id": posted[0]["id"], "text": f"{label} edited"})
    await bob.ok("react", {"room": room, "id": parent_id, "emoji": "👍"})
    await bob.ok("pin", {"room": room, "id": posted[1]["id"]})
    await bob.ok("unpin", {"room": room, "id": posted[1]["id"]})
    await bob.ok("delete", {"room": room, "id": posted[1]["id"]})
    return posted


def stream_of(events: Iterable[tuple[str, dict[str, Any]]], room: str) -> list[tuple[str, str]]:
    """``(event, pos)`` of every room-stream record of ``room``, in the order received."""
    return [
        (event, data["pos"]) for event, data in events if event in STREAM_EVENTS and data.get("room") == room
    ]


def sqlite_file(data_dir: Path) -> Path:
    return data_dir / "chatsvc.sqlite3"


def raise_floor(data_dir: Path, room: str) -> None:
    """What retention purging does to a room (chatsvc.store.sqlite): positions up to its
    head are no longer kept, so a catch-up from below must resync."""
    with sqlite3.connect(sqlite_file(data_dir), timeout=10) as db:
        db.execute("UPDATE room_streams SET floor = head WHERE room = ?", (room,))


def new_epoch(data_dir: Path) -> None:
    """The store's stream epoch changes (a restored or recreated database), sessions kept."""
    with sqlite3.connect(sqlite_file(data_dir), timeout=10) as db:
        db.execute("UPDATE stream_meta SET value = 'n3wepoch' WHERE key = 'epoch'")


class Recovering(socketio.AsyncClient):  # type: ignore[misc]
    """A python-socketio client that records every event in order and the CONNECT reply."""

    def __init__(self, received: list[tuple[str, list[Any]]]) -> None:
        super().__init__(reconnection=False, request_timeout=5)
        self.hello: dict[str, Any] = {}
        self.received = received
        self.on("*", self._record)

    async def _handle_connect(self, namespace: str, data: Any) -> None:
        self.hello = dict(data or {})
        await super()._handle_connect(namespace, data)

    async def _record(self, event: str, *args: Any) -> None:
        self.received.append((event, list(args)))

    @property
    def offset(self) -> str | None:
        """What socket.io-client would send: the last string last argument of an event."""
        for _, args in reversed(self.received):
            if len(args) == 2 and isinstance(args[-1], str):
                return args[-1]
        return None

    async def ok(self, event: str, data: Any) -> dict[str, Any]:
        ack = await self.call(event, data, timeout=5)
        assert isinstance(ack, dict) and ack.get("ok") is True, f"{event} {data!r} -> {ack!r}"
        return ack

    async def drop(self) -> None:
        """Forget a connection the network already cut (nothing reaches the server)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.eio.disconnect(abort=True)


async def connect(url: str, auth: dict[str, Any], transport: str, received: list[Any]) -> Recovering:
    client = Recovering(received)
    await client.connect(url, auth=auth, transports=[transport], wait_timeout=10)
    return client


def connections(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("chatsvc_connections "):
                return float(line.split()[1])
    raise AssertionError("no chatsvc_connections gauge")


def data_dir(server: ServerProcess) -> Path:
    return Path(server.env["CHATSVC_DATA_DIR"])


def events(received: list[tuple[str, list[Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(event, args[0]) for event, args in received if args and isinstance(args[0], dict)]
