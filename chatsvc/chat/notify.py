"""Offline notifications (issue 24): one record per (user, message) for a member of a
private or direct room (or a mentioned user) with no live socket anywhere in the cluster.

Every notification is written to the store's durable outbox (SQLite, ScyllaDB: unique per
(user, message), so no replica, retry or restart writes a pair twice), which the admin
API's ``StreamNotifications`` reads with a resume position. With ``CHATSVC_NOTIFY_TOPIC``
set, a background relay (:mod:`chatsvc.chat.notify_relay`) also produces the outbox to the
Kafka topic, exactly once per pair; the sender's ack never waits for it. README, "Offline
notifications".

"Offline" is :class:`chatsvc.chat.online.OnlineUsers`: no socket on any live replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from chatsvc.auth.identity import Identity
from chatsvc.chat.blocks import Blocks
from chatsvc.chat.notify_relay import NotificationRelay
from chatsvc.chat.online import OnlineUsers
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
    """Notifies offline members (in the outbox, relayed to the topic if configured) and
    streams the outbox."""

    def __init__(
        self,
        members: ConversationStore,
        limits: Limits,
        *,
        outbox: NotificationOutbox,
        relay: NotificationRelay | None = None,
        online: OnlineUsers | None = None,
        blocks: Blocks | None = None,
    ) -> None:
        """``relay``: to CHATSVC_NOTIFY_TOPIC as well."""
        self._outbox = outbox
        self.relay = relay
        self._members = members
        self._limits = limits
        self._blocks = blocks
        self.users = online
        #: Whether a user has a live socket (default: the cluster's connected users).
        self.online: Callable[[str], bool] = online.anywhere if online is not None else lambda _user: False
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Start the relay, join the cluster's online registry (after the bus started)."""
        if self.relay is not None:
            await self.relay.start()
        if self.users is not None:
            await self.users.start()

    async def aclose(self) -> None:
        """Leave the online registry, stop the relay (it gives its lease up)."""
        if self.users is not None:
            await self.users.aclose()
        if self.relay is not None:
            await self.relay.aclose()

    async def connected(self, user: Identity, sid: str) -> None:
        """A socket of ``user`` connected to this replica (the namespace tells)."""
        if self.users is not None:
            await self.users.connected(user, sid)

    async def disconnected(self, user: Identity, sid: str) -> None:
        """A socket of ``user`` left this replica."""
        if self.users is not None:
            await self.users.disconnected(user, sid)

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
        failed: ChatError | None = None
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
            try:
                if await self._outbox.add_notification(notification):
                    written += 1
            except ChatError as exc:  # the next member's may still go through
                failed = exc
        if failed is not None:
            log.warning("a notification of a message was not written (%s)", failed.code)
        if written:
            self._wake.set()
            self._wake = asyncio.Event()
            if self.relay is not None:
                self.relay.wake()
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
                    async with asyncio.timeout(STREAM_POLL_SECONDS):  # not wait_for: see notify_relay
                        await wake.wait()
