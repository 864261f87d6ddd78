"""The embedded default: fan-out inside one process."""

from __future__ import annotations

from typing import Any

from chatsvc.bus.base import ControlHandler
from chatsvc.transport.broadcast import DirectEmitMixin


class LocalManager(DirectEmitMixin):
    """python-socketio's in-memory manager (with task-free room broadcasts) and the app's
    lifecycle hooks (all no-ops)."""

    async def start(self) -> None:
        """Nothing to connect."""

    async def check(self) -> None:
        """Always healthy."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def on_control(self, handler: ControlHandler) -> None:
        """There are no other replicas to hear from."""

    async def publish_control(self, message: dict[str, Any]) -> None:
        """There are no other replicas to tell."""
