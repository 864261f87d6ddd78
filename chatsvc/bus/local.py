"""The embedded default: fan-out inside one process."""

from __future__ import annotations

import socketio


class LocalManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's in-memory manager with the app's lifecycle hooks (all no-ops)."""

    async def start(self) -> None:
        """Nothing to connect."""

    async def check(self) -> None:
        """Always healthy."""

    async def aclose(self) -> None:
        """Nothing to close."""
