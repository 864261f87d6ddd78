"""A python-socketio server on a chosen client manager, its sends recorded instead of sent:
for tests of what the broadcast path queues, socket by socket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import socketio


@dataclass
class RecordedServer:
    """``sids[i]`` is the Socket.IO session on Engine.IO session ``eio{i}``; ``sent`` holds
    (Engine.IO sid, encoded packet) for every packet queued, in queueing order."""

    sio: Any
    manager: Any
    sids: list[str]
    sent: list[tuple[str, str]]


async def recorded_server(
    manager: socketio.AsyncManager,
    rooms: Sequence[str],
    server_class: type[socketio.AsyncServer] = socketio.AsyncServer,
) -> RecordedServer:
    """``manager`` under a ``server_class``, set up as the app does, with one connected
    socket per entry of ``rooms``, each in that room."""
    sio = server_class(async_mode="aiohttp", client_manager=manager)
    sio.manager_initialized = True
    manager.set_server(sio)
    manager.initialize()
    sent: list[tuple[str, str]] = []

    async def record(eio_sid: str, pkt: Any) -> None:
        sent.append((eio_sid, pkt.encode()))

    sio.eio.send_packet = record
    sids = [await manager.connect(f"eio{i}", "/") for i in range(len(rooms))]
    for sid, room in zip(sids, rooms, strict=True):
        await manager.enter_room(sid, "/", room)
    return RecordedServer(sio, manager, sids, sent)
