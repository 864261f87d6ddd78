"""What the app needs from a fan-out manager beyond python-socketio's manager API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]


class ManagedBus(Protocol):
    """Lifecycle of a client manager: connect at startup, report health, close at shutdown."""

    async def start(self) -> None:
        """Connect (with retries); raise ``chatsvc.errors.StartupError`` when it cannot."""

    async def check(self) -> None:
        """Raise ``chatsvc.errors.BusUnavailable`` while the bus is not connected."""

    async def aclose(self) -> None:
        """Stop background work and close clients; idempotent."""

    def on_control(self, handler: ControlHandler) -> None:
        """Call ``handler`` with every control message published by *another* replica."""

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Send a JSON-able control message (not a Socket.IO packet) to every other replica.

        Used for cluster state that python-socketio does not carry: presence snapshots,
        moderation changes, admin requests. Raises ``BusUnavailable`` when it cannot send.
        """
