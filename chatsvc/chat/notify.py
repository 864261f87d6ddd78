"""Offline notifications (issue 24): one record per (user, message) for a member of a
private or direct room (or a mentioned user) with no live socket anywhere in the cluster.

Every notification is written to the store's durable outbox (SQLite, ScyllaDB: unique per
(user, message), so no replica, retry or restart writes a pair twice), which the admin
API's ``StreamNotifications`` reads with a resume position. With ``CHATSVC_NOTIFY_TOPIC``
set, a background relay (:mod:`chatsvc.chat.notify_relay`) also produces the outbox to the
Kafka topic, exactly once per pair; the sender's ack never waits for it. README, "Offline
notifications".

Notifications are derived from the message's *durable record* by a step that resumes after
a crash, so a replica killed between the sender's ack and the notifications loses none:

* Cluster mode (the events log): the history writer (:mod:`chatsvc.chat.history_writer`)
  calls :meth:`Notifier.written` for each message record it writes. It resumes from its
  committed offsets, so a record whose notifications a dead writer did not finish is
  written again by the partition's next writer; the outbox keeps each pair once. The send
  path writes none (:meth:`Notifier.posted` is a no-op there).
* Embedded (SQLite, memory; ScyllaDB without Kafka): the store marks a message that may
  notify (:class:`~chatsvc.store.base.PendingNotifications`) in the message's own
  transaction (ScyllaDB: the mark written before the message row, so never a message
  without its mark; :mod:`chatsvc.store.scylla.pending`); :meth:`posted` writes the
  notifications right after the ack and clears the mark. Marks left by a crash (or a failed
  write) are written by a sweep at start (and after a failure, with capped backoff). A
  retried send that turns out a duplicate asks for a sweep too. In cluster mode nothing is
  marked (messages bring their log position) and nothing sweeps (``from_log``).

"Offline" is :class:`chatsvc.chat.online.OnlineUsers`: no socket on any live replica,
judged when the step runs (the writer may be behind the send). The writer commits only
settled batches, so a rebalance or restart runs the last seconds' records again; a message
whose notifications were finished is marked (:class:`~chatsvc.store.base.NotifiedMessages`)
and skipped then, so a member whose replica just stopped is not notified of what it got
live. Only a message a crash cut off mid-way is judged again (a user online then and gone
now may get a notification for it; one who came online meanwhile got it live or by catch-up).
A notification failure never fails an acked send: it is logged once and retried as above.
Only users' messages notify (the admin API's system messages do not).
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
from chatsvc.errors import ChatError, StoreUnavailable
from chatsvc.model.messages import Message
from chatsvc.model.rooms import Notification, kind_of_name, members_only
from chatsvc.settings import Limits
from chatsvc.store.base import (
    ConversationStore,
    NotificationOutbox,
    NotifiedMessages,
    PendingNotifications,
)

log = logging.getLogger(__name__)

#: Characters of the message text in a notification.
PREVIEW_CHARS = 100
#: Notifications read per store round trip by a stream.
STREAM_BATCH = 100
#: A stream with nothing new looks again at least this often (seconds).
STREAM_POLL_SECONDS = 1.0
#: Marked messages read per store round trip by the embedded sweep.
SWEEP_BATCH = 100
#: The sweep's backoff after a failure (seconds): first, and cap.
SWEEP_BACKOFF_SECONDS = 0.5
SWEEP_BACKOFF_CAP_SECONDS = 30.0


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
        #: Cluster mode: the history writer notifies (:meth:`written`), the send path not.
        self.from_log = False
        self._pending = outbox if isinstance(outbox, PendingNotifications) else None
        self._done = outbox if isinstance(outbox, NotifiedMessages) else None
        self._sweep_due = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.relay = relay
        self._members = members
        self._limits = limits
        self._blocks = blocks
        self.users = online
        #: Whether a user has a live socket (default: the cluster's connected users).
        self.online: Callable[[str], bool] = online.anywhere if online is not None else lambda _user: False
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Start the relay, join the cluster's online registry (after the bus started);
        embedded: sweep the marks a previous process left, in the background."""
        if self.relay is not None:
            await self.relay.start()
        if self.users is not None:
            await self.users.start()
        if self._pending is not None and not self.from_log and self._sweeper is None:
            self._sweep_due.set()
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="chatsvc-notify-sweep")

    async def aclose(self) -> None:
        """Stop the sweep, leave the online registry, stop the relay (it gives its lease up)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
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

    async def posted(self, message: Message, *, created: bool = True) -> int:
        """The send path, once the message is stored (before its ack is returned, which
        never fails for it): a new message notifies its room's offline members; return how
        many. Cluster mode: nothing (the history writer does, :meth:`written`).
        A store failure is logged and costs the notifications only until the sweep writes
        them (embedded: the mark stays), never the message. A duplicate (a retried send)
        writes nothing itself; it asks for a sweep, which finds its mark only if the first
        attempt's process died before writing them."""
        if self.from_log or not _may_notify(message):
            return 0
        if not created:
            if self._pending is not None:
                self._sweep_due.set()
            return 0
        written, failed = await self._notify(message)
        if failed is not None:
            log.warning("a notification of a message was not written (%s); retried by the sweep", failed.code)
            self._sweep_due.set()
            return written
        if self._pending is not None:
            try:
                await self._pending.clear_pending_notification(message.room, message.id)
            except ChatError as exc:  # a later sweep finds them written and clears it
                log.warning("a written message's notification mark was not cleared (%s)", exc.code)
        return written

    async def written(self, message: Message, members: list[str] | None = None) -> int:
        """Cluster mode's history writer wrote ``message`` (a replay and the original of a
        late duplicate included): notify its offline members, once per pair (the outbox
        is unique), unless a run before finished them (the store's mark). ``members``: a
        private room's members as its record names them (the sender's audience), else read
        from the store. Raises ``StoreUnavailable`` when a notification could not be
        written, so the writer retries the record (its writes are idempotent); another
        failure is logged and costs that notification."""
        if not _may_notify(message):
            return 0
        done = self._done
        if done is not None and await done.notifications_done(message.room, message.id):
            return 0  # a re-run: judged when first written, not again
        if self.users is not None:
            await self.users.settled()  # a just-started registry would call everyone offline
        written, failed = await self._notify(message, members)
        if isinstance(failed, StoreUnavailable):
            raise failed
        if failed is not None:
            log.warning("a notification of a message was not written (%s)", failed.code)
        if done is not None:  # after them: a mark that survives a store crash means they did
            await done.mark_notifications_done(message.room, message.id)
        return written

    async def sweep(self) -> int:
        """Embedded: write the notifications of every marked message and clear the marks;
        return how many were written. Raises the first ``StoreUnavailable`` (the marks
        stay, retried); another failure is logged and costs that notification."""
        if self._pending is None:
            return 0
        total = 0
        while True:
            batch = await self._pending.pending_notifications(SWEEP_BATCH)
            for message in batch:
                due = _may_notify(message)
                written, failed = await self._notify(message) if due else (0, None)
                if isinstance(failed, StoreUnavailable):
                    raise failed
                if failed is not None:
                    log.warning("a notification of a message was not written (%s)", failed.code)
                total += written
                await self._pending.clear_pending_notification(message.room, message.id)
            if len(batch) < SWEEP_BATCH:
                return total

    async def _sweep_loop(self) -> None:
        """Sweep whenever asked (at start, after a failure, on a duplicate send), with
        capped backoff while the store fails (logged once per outage)."""
        delay = SWEEP_BACKOFF_SECONDS
        down: str | None = None
        while True:
            await self._sweep_due.wait()
            self._sweep_due.clear()
            try:
                swept = await self.sweep()
            except asyncio.CancelledError:
                raise
            except ChatError as exc:
                if down is None:
                    log.warning("notification sweep failed (%s); retrying (logged once)", exc.code)
                down = exc.code
                self._sweep_due.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, SWEEP_BACKOFF_CAP_SECONDS)
                continue
            if swept:
                log.info("notification sweep wrote %d notification(s) left unwritten", swept)
            if down is not None:
                log.info("notification sweep resumed")
            down, delay = None, SWEEP_BACKOFF_SECONDS

    async def _notify(
        self, message: Message, members: list[str] | None = None
    ) -> tuple[int, ChatError | None]:
        """Write the notifications of ``message`` (to ``members`` of a private room when
        known); how many were new, and the last failure (the other members' writes still
        go through)."""
        # Public rooms notify only the users a message mentions (issue 25), kind "mention";
        # a mentioned member of a private room gets its one notification as a mention too.
        if members_only(message.room) and members is not None:
            users = members
        elif members_only(message.room):
            try:
                read = await self._members.list_members(
                    message.room, after=None, limit=self._limits.members_per_room
                )
            except ChatError as exc:
                return 0, exc
            users = [m.user_id for m in read]
        else:
            users = list(message.mentions)
        written = 0
        failed: ChatError | None = None
        for user in users:
            if user == message.user_id or self.online(user):
                continue
            try:
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
            except ChatError as exc:  # the next member's may still go through
                failed = exc
        if written:
            self._wake.set()
            self._wake = asyncio.Event()
            if self.relay is not None:
                self.relay.wake()
        return written, failed

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


def _may_notify(message: Message) -> bool:
    """A user's message in a private or direct room, or one with mentions (the rest, most
    messages, cost no store read here); not one deleted before its notifications (a sweep
    or a re-run after a crash reads the stored row)."""
    return (
        message.kind == "user"
        and not message.deleted
        and (members_only(message.room) or bool(message.mentions))
    )
