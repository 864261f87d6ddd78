"""Offline notifications (issue 24): one record per (user, message) for a member of a
private or direct room (or a mentioned user) with no live socket anywhere in the cluster.

Where they go, by configuration (README, "Offline notifications"):

* ``CHATSVC_NOTIFY_TOPIC`` set: a Kafka topic for a push service
  (:mod:`chatsvc.bus.notify_kafka`), after claiming the (user, message) pair: in the store
  when it is shared (ScyllaDB, :class:`~chatsvc.store.base.NotificationClaims`), so no
  replica, retry or restart produces a pair twice; in this process otherwise (a
  single-replica store, whose idempotent append already reports a post new exactly once).
  StreamNotifications is UNAVAILABLE then: the topic is the stream.
* otherwise the store's outbox (SQLite, ScyllaDB: unique per (user, message)), read by the
  admin API's ``StreamNotifications`` with a resume position.

"Offline" is :class:`chatsvc.chat.online.OnlineUsers`: no socket on any live replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from chatsvc.auth.identity import Identity
from chatsvc.chat.blocks import Blocks
from chatsvc.chat.online import OnlineUsers
from chatsvc.errors import ChatError, Unavailable
from chatsvc.model.messages import Message
from chatsvc.model.rooms import Notification, kind_of_name, members_only
from chatsvc.settings import Limits
from chatsvc.store.base import ConversationStore, NotificationClaims, NotificationOutbox

log = logging.getLogger(__name__)

#: Characters of the message text in a notification.
PREVIEW_CHARS = 100
#: Notifications read per store round trip by a stream.
STREAM_BATCH = 100
#: A stream with nothing new looks again at least this often (seconds).
STREAM_POLL_SECONDS = 1.0
#: Pairs a process-local claim remembers (single-replica stores only).
LOCAL_CLAIMS = 100_000


class NotificationPublisher(Protocol):
    """Where notifications go with ``CHATSVC_NOTIFY_TOPIC`` (chatsvc.bus.notify_kafka)."""

    topic: str

    async def start(self) -> None:
        """Connect; ``StartupError`` if it cannot."""

    async def aclose(self) -> None:
        """Flush and disconnect."""

    async def publish(self, notification: Notification) -> None:
        """Deliver one notification; a ``ChatError`` if it could not be."""


class LocalClaims:
    """:class:`NotificationClaims` of one process, for stores that are not shared: their
    append reports a post new once, so this only has to stop a repeat in this process."""

    def __init__(self, capacity: int = LOCAL_CLAIMS) -> None:
        self._taken: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._capacity = capacity

    async def claim_notification(self, user_id: str, message_id: str) -> bool:
        """Take the pair unless taken (oldest pairs forgotten past the capacity)."""
        key = (user_id, message_id)
        if key in self._taken:
            return False
        self._taken[key] = None
        if len(self._taken) > self._capacity:
            self._taken.popitem(last=False)
        return True


class Notifier:
    """Notifies offline members (to the topic or the outbox) and streams the outbox."""

    def __init__(
        self,
        members: ConversationStore,
        limits: Limits,
        *,
        outbox: NotificationOutbox | None = None,
        publisher: NotificationPublisher | None = None,
        claims: NotificationClaims | None = None,
        online: OnlineUsers | None = None,
        blocks: Blocks | None = None,
    ) -> None:
        """One of ``outbox`` and ``publisher``; ``claims`` (default: :class:`LocalClaims`)
        guards the publisher."""
        if (outbox is None) == (publisher is None):
            raise ValueError("a Notifier writes to an outbox or to a publisher")
        self._outbox = outbox
        self._publisher = publisher
        self._claims: NotificationClaims = claims if claims is not None else LocalClaims()
        self._members = members
        self._limits = limits
        self._blocks = blocks
        self.users = online
        #: Whether a user has a live socket (default: the cluster's connected users).
        self.online: Callable[[str], bool] = online.anywhere if online is not None else lambda _user: False
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Connect the publisher, join the cluster's online registry (after the bus started)."""
        if self._publisher is not None:
            await self._publisher.start()
        if self.users is not None:
            await self.users.start()

    async def aclose(self) -> None:
        """Leave the online registry, flush and close the publisher."""
        if self.users is not None:
            await self.users.aclose()
        if self._publisher is not None:
            await self._publisher.aclose()

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
                if await self._deliver(notification):
                    written += 1
            except ChatError as exc:  # the next member's may still go through
                failed = exc
        if failed is not None:
            log.warning("a notification of a message was not written (%s)", failed.code)
        if written:
            self._wake.set()
            self._wake = asyncio.Event()
        return written

    async def _deliver(self, notification: Notification) -> bool:
        if self._publisher is None:
            assert self._outbox is not None
            return await self._outbox.add_notification(notification)
        if not await self._claims.claim_notification(notification.user_id, notification.message_id):
            return False
        await self._publisher.publish(notification)
        return True

    def check_stream(self) -> None:
        """``Unavailable`` when notifications go to Kafka (the topic is the stream)."""
        if self._outbox is None:
            topic = self._publisher.topic if self._publisher is not None else "?"
            raise Unavailable(f"notifications go to the Kafka topic {topic}: consume it there")

    async def stream(self, after: int) -> AsyncIterator[tuple[int, Notification]]:
        """Every notification after position ``after``, then each new one as it is written;
        runs until the caller stops reading."""
        self.check_stream()
        assert self._outbox is not None
        while True:
            wake = self._wake
            batch = await self._outbox.notifications_after(after, STREAM_BATCH)
            for position, notification in batch:
                yield position, notification
                after = position
            if len(batch) < STREAM_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), STREAM_POLL_SECONDS)
