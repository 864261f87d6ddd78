"""What the app needs from a fan-out manager beyond python-socketio's manager API."""

from __future__ import annotations

from typing import Protocol


class ManagedBus(Protocol):
    """Lifecycle of a client manager: connect at startup, report health, close at shutdown."""

    async def start(self) -> None:
        """Connect (with retries); raise ``chatsvc.errors.StartupError`` when it cannot."""

    async def check(self) -> None:
        """Raise ``chatsvc.errors.BusUnavailable`` while the bus is not connected."""

    async def aclose(self) -> None:
        """Stop background work and close clients; idempotent."""
