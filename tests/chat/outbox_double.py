"""A notification outbox that fails on demand, over a real :class:`MemoryStore`: the store
failures of the offline notifications (tests/chat/test_notify.py, test_history_writer.py)."""

from __future__ import annotations

from collections.abc import Callable

from chatsvc.errors import StoreUnavailable
from chatsvc.model.messages import Message
from chatsvc.model.rooms import Notification
from chatsvc.store.memory import MemoryStore


class FlakyOutbox(MemoryStore):
    """``store``'s outbox, except that :meth:`add_notification` raises StoreUnavailable
    while ``failing(notification)`` holds. The marks the notifier keeps beside the outbox
    (a message's notifications done, its pending mark) are ``store``'s too."""

    def __init__(self, store: MemoryStore, failing: Callable[[Notification], bool]) -> None:
        super().__init__()
        self._store = store
        self._failing = failing

    async def add_notification(self, notification: Notification) -> bool:
        if self._failing(notification):
            raise StoreUnavailable("message store error: NoHostAvailable")
        return await self._store.add_notification(notification)

    async def notifications_done(self, room: str, message_id: str) -> bool:
        return await self._store.notifications_done(room, message_id)

    async def mark_notifications_done(self, room: str, message_id: str) -> None:
        await self._store.mark_notifications_done(room, message_id)

    async def pending_notifications(self, limit: int) -> list[Message]:
        return await self._store.pending_notifications(limit)

    async def clear_pending_notification(self, room: str, message_id: str) -> None:
        await self._store.clear_pending_notification(room, message_id)
