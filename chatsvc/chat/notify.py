"""Offline notifications, embedded mode (issue 24): an outbox in the store, read by
the admin API's ``StreamNotifications``.

When a message is posted in a private or direct room, each member other than the author
that has no live socket gets one notification record (user, room, message id, sender,
preview, kind), unless it blocks the author. The outbox's unique key (user, message)
makes it at most once per pair, and a post is new exactly once (the store is idempotent on
``client_msg_id``), so a retried send never notifies twice; the outbox is durable in
SQLite, so a restart loses nothing written. Only the embedded, single-replica setup has
it: with one replica, "no live socket here" is "no live socket anywhere".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from chatsvc.chat.blocks import Blocks
from chatsvc.errors import ChatError
from chatsvc.model.messages import Message
from chatsvc.model.rooms import Notification, kind_of_name, members_only
from chatsvc.settings import Limits
from chatsvc.store.base import ConversationStore, NotificationOutbox

log = logging.getLogger(__name__)

#: Characters of the message text in a notification.
PREVIEW_CHARS = 100
#: Notifications read per store round trip by a stream.
STREAM_BATCH = 100
#: A stream with nothing new looks again at least this often (seconds).
STREAM_POLL_SECONDS = 1.0


class Notifier:
    """Writes notifications for offline members and streams them in position order."""

    def __init__(
        self,
        outbox: NotificationOutbox,
        members: ConversationStore,
        limits: Limits,
        *,
        blocks: Blocks | None = None,
    ) -> None:
        self._outbox = outbox
        self._members = members
        self._limits = limits
        self._blocks = blocks
        #: Whether a user has a live socket (the namespace's, set at assembly).
        self.online: Callable[[str], bool] = lambda _user: False
        self._wake = asyncio.Event()

    async def posted(self, message: Message) -> int:
        """A new message: notify its room's offline members; return how many. A store failure
        is logged and costs the notifications, never the message."""
        if not members_only(message.room) and not message.mentions:
            return 0
        try:
            return await self._notify(message)
        except ChatError as exc:
            log.warning("notifications of a message were not written (%s)", exc.code)
            return 0

    async def _notify(self, message: Message) -> int:
        # Public rooms notify only the users a message mentions (issue 25), kind "mention";
        # a mentioned member of a private room gets its one notification as a mention too.
        if members_only(message.room):
            members = await self._members.list_members(
                message.room, after=None, limit=self._limits.members_per_room
            )
            users = [m.user_id for m in members]
        else:
            users = list(message.mentions)
        written = 0
        for user in users:
            if user == message.user_id or self.online(user):
                continue
            if self._blocks is not None and await self._blocks.is_blocked(user, message.user_id):
                continue
            notification = Notification(
                user_id=user,
                room=message.room,
                message_id=message.id,
                sender=message.user_id,
                preview=message.text[:PREVIEW_CHARS],
                kind="mention" if user in message.mentions else kind_of_name(message.room),
                created_at_ms=message.created_at_ms,
            )
            if await self._outbox.add_notification(notification):
                written += 1
        if written:
            self._wake.set()
            self._wake = asyncio.Event()
        return written

    async def stream(self, after: int) -> AsyncIterator[tuple[int, Notification]]:
        """Every notification after position ``after``, then each new one as it is written;
        runs until the caller stops reading."""
        while True:
            wake = self._wake
            batch = await self._outbox.notifications_after(after, STREAM_BATCH)
            for position, notification in batch:
                yield position, notification
                after = position
            if len(batch) < STREAM_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), STREAM_POLL_SECONDS)
