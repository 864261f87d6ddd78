"""The store interfaces every history backend implements, one small Protocol per concern.

Designed for a partitioned store: messages live in (room, time bucket) partitions and are
clustered by their time-sortable id, newest first; cursors are ids; writes are idempotent
on ``(room, user_id, client_msg_id)``. Implementations raise only store-level errors:
``StoreUnavailable`` for anything the backend throws, ``NotFound`` for a missing message
and ``InvalidMessageId`` for an id that is not one (the chat layer, which took the id from
a client, translates that into its protocol error). The records are ``chatsvc.model``'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from chatsvc.model.messages import (
    Flag,
    HistoryPage,
    Message,
    Moderation,
    ReplyRef,
    RoomEvent,
    RoomInfo,
    SessionRecord,
    StreamSlice,
    ThreadSummary,
)
from chatsvc.model.modes import RoomMode, SentimentCounts
from chatsvc.model.rooms import Conversation, Member, Notification, members_only

#: Width of a time bucket. Ten days keeps a busy room's partition well under 100 MB.
BUCKET_MS = 10 * 24 * 3600 * 1000


def bucket_of(ms: int) -> int:
    """The bucket number holding a message created at ``ms``."""
    return ms // BUCKET_MS


#: Room events (edits, deletes) are kept this long: replays only reach back
#: ``CHATSVC_RECOVERY_WINDOW`` (at most a day) from a session's last delivery.
EVENT_RETENTION_SECONDS = 2 * 24 * 3600


def encode_reply(ref: ReplyRef | None) -> str | None:
    """A reply's parent reference as stored in a text column (None: not a reply)."""
    if ref is None:
        return None
    return json.dumps(
        {"id": ref.id, "user_id": ref.user_id, "user_name": ref.user_name, "preview": ref.preview}
    )


def decode_reply(value: object) -> ReplyRef | None:
    """The reference :func:`encode_reply` stored, or None."""
    if value is None or value == "":
        return None
    data = json.loads(str(value))
    return ReplyRef(str(data["id"]), str(data["user_id"]), str(data["user_name"]), str(data["preview"]))


def encode_mentions(mentions: tuple[str, ...]) -> str | None:
    """Mentioned user ids as stored in a text column (None: none)."""
    return json.dumps(list(mentions)) if mentions else None


def decode_mentions(value: object) -> tuple[str, ...]:
    """The ids :func:`encode_mentions` stored."""
    if value is None or value == "":
        return ()
    return tuple(str(v) for v in json.loads(str(value)))


class StoreLifecycle(Protocol):
    """Connecting, schema and liveness."""

    async def open(self) -> None:
        """Connect (and create the schema where that is safe); raise ``StoreUnavailable``."""

    async def aclose(self) -> None:
        """Release connections; idempotent."""

    async def migrate(self) -> None:
        """Create or upgrade the schema; safe to run repeatedly."""

    async def ping(self) -> None:
        """Cheap liveness check for readiness; raise ``StoreUnavailable`` when down."""


class MessageLog(Protocol):
    """The messages of each room: append, page through, edit and delete."""

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Store ``message``. If ``(room, user_id, client_msg_id)`` was stored before, return
        that original and ``False``; otherwise the stored message, with its stream position
        (``pos``), and ``True``."""

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Up to ``limit`` messages older than ``before`` (or the newest), newest first."""

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Up to ``limit`` messages newer than ``after_id``, oldest first (catch-up)."""

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message, or None."""

    async def edit(
        self, room: str, message_id: str, text: str, at_ms: int, *, tickers: tuple[str, ...] | None = None
    ) -> Message:
        """Replace the text of a message (and its ``tickers``, when given); raise ``NotFound``
        if it does not exist."""

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Mark a message deleted (text cleared); raise ``NotFound`` if it does not exist."""


class RoomDirectory(Protocol):
    """The rooms messages were posted in."""

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Known rooms in name order, starting after ``after``."""

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room, or None if nothing was ever posted there."""


class ReadMarkers(Protocol):
    """Per user and room, the newest message read."""

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Remember the newest message ``user_id`` has read in ``room`` (never moves back)."""

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others after the user's read marker, counted up to ``cap``."""


class ModerationStore(Protocol):
    """Bans and mutes."""

    async def set_moderation(self, record: Moderation) -> None:
        """Create or replace the ban/mute for ``(kind, room, user_id)``."""

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Lift a ban/mute; no error if there is none."""

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """The record for ``(kind, room, user_id)`` if any (expired ones may be returned)."""


class RoomEventLog(Protocol):
    """Edits and deletes, kept for a while so recovering sockets can replay them."""

    async def append_event(self, event: RoomEvent) -> RoomEvent:
        """Record an edit/delete event (kept :data:`EVENT_RETENTION_SECONDS`); return it with
        its stream position (an event id seen before keeps its first position)."""

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Up to ``limit`` events of ``room`` with ids above ``after_id``, oldest first."""


class RoomStream(Protocol):
    """Each room's records (messages, edits, deletes) in one order: the room's stream.

    Every record gets a position when it is appended: 1, 2, 3... per room, assigned once,
    never going backwards. Positions are only meaningful within the store's ``epoch`` (a
    random id made with the store): a position from another epoch names nothing here.
    """

    async def stream_epoch(self) -> str:
        """The epoch of this store's positions: short, lowercase letters and digits."""

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """Up to ``limit`` records of ``room`` with positions above ``pos``, in position
        order; ``covered`` False if positions after ``pos`` are no longer (or not) kept."""


class SessionStore(Protocol):
    """Dropped sockets' recoverable sessions, each usable once."""

    async def save_session(self, record: SessionRecord) -> None:
        """Store (or replace) a session until ``record.expires_at_ms``."""

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The unexpired session under ``pid``, or None."""

    async def delete_session(self, pid: str) -> bool:
        """Remove the session; True only for the one call that removed it (one use)."""


class ConversationStore(Protocol):
    """Private and direct rooms and their members (issue 24), read by room and by user.

    Members are kept twice, by room and by user (the two queries), each partition bounded
    by the chat layer (members per room, rooms per user). A room without a record is public.
    """

    async def create_conversation(self, conversation: Conversation, members: list[Member]) -> None:
        """Store a new room's record and its first members."""

    async def get_conversation(self, room: str) -> Conversation | None:
        """The record of a private or direct room, or None."""

    async def find_dm(self, pair: str) -> str | None:
        """The direct room of ``pair`` if one was claimed."""

    async def claim_dm(self, pair: str, room: str) -> str:
        """The direct room of ``pair`` (:func:`~chatsvc.model.rooms.dm_pair`): ``room`` if this
        call recorded it, else the one recorded first (concurrent openers agree)."""

    async def put_member(self, member: Member) -> None:
        """Add a member or change its role."""

    async def delete_member(self, room: str, user_id: str) -> None:
        """Remove a member; no error if it is not one."""

    async def get_member(self, room: str, user_id: str) -> Member | None:
        """One membership, or None."""

    async def list_members(self, room: str, *, after: str | None, limit: int) -> list[Member]:
        """Members of ``room`` in user id order, starting after ``after``."""

    async def count_members(self, room: str) -> int:
        """How many members ``room`` has."""

    async def rooms_of(self, user_id: str, *, limit: int) -> list[Member]:
        """Up to ``limit`` memberships of ``user_id`` (private and direct rooms), by room name."""


class JoinedRooms(Protocol):
    """Public rooms each user joined and did not remove itself from (the directory, issue
    24); at most ``CHATSVC_MAX_ROOMS_PER_USER`` per user, enforced by the chat layer."""

    async def put_joined(self, user_id: str, room: str, at_ms: int) -> None:
        """Remember that ``user_id`` joined public ``room`` (again: no change)."""

    async def delete_joined(self, user_id: str, room: str) -> None:
        """Forget it; no error if absent."""

    async def joined_rooms(self, user_id: str, *, limit: int) -> list[str]:
        """Up to ``limit`` public rooms of ``user_id``, by name."""


class BlockStore(Protocol):
    """Who blocks whom (issue 24). Every question names the blocker: whom does X block,
    does Y block X; at most ``CHATSVC_MAX_BLOCKS_PER_USER`` per blocker."""

    async def put_block(self, blocker: str, blocked: str, at_ms: int) -> None:
        """``blocker`` blocks ``blocked`` (again: no change)."""

    async def delete_block(self, blocker: str, blocked: str) -> None:
        """Lift a block; no error if absent."""

    async def blocks_of(self, blocker: str, *, limit: int) -> list[str]:
        """Up to ``limit`` users ``blocker`` blocks, by id."""

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` blocks ``blocked``."""


@runtime_checkable
class NotificationOutbox(Protocol):
    """Notifications for offline users, in the embedded store (issue 24): durable, each
    (user, message) at most once, read in position order by StreamNotifications."""

    async def add_notification(self, notification: Notification) -> bool:
        """Append it unless ``(user_id, message_id)`` is there already; True if appended."""

    async def notifications_after(self, position: int, limit: int) -> list[tuple[int, Notification]]:
        """Up to ``limit`` notifications after ``position``, oldest first, with their positions."""


def marks_pending(message: Message) -> bool:
    """Whether ``append`` marks ``message`` as :class:`PendingNotifications`: a user's
    message (the admin API's system messages notify nobody) that may notify (private or
    direct room, or mentions) of which the store is the record (no position brought from
    the events log). A public message without mentions costs nothing."""
    return (
        message.kind == "user"
        and message.pos is None
        and (bool(message.mentions) or members_only(message.room))
    )


@runtime_checkable
class PendingNotifications(Protocol):
    """Messages whose offline notifications are not written yet, in a store that is its
    own durable record (the embedded default, and ScyllaDB without Kafka; issue 24):
    ``append`` marks a new message of a private or direct room, or one with mentions, *in
    the message's own transaction* (ScyllaDB, which has none across partitions: before the
    message row) unless the message brings its position (cluster mode: the events log is
    the record and its history writer notifies). The notifier clears the mark once every
    notification is written, and a restarted process writes those of the marks left."""

    async def pending_notifications(self, limit: int) -> list[Message]:
        """Up to ``limit`` marked messages, oldest first (a mark whose message is gone is
        dropped)."""

    async def clear_pending_notification(self, room: str, message_id: str) -> None:
        """Its notifications are written: drop the mark (none: no error)."""


@runtime_checkable
class NotifiedMessages(Protocol):
    """Messages whose offline notifications the history writer finished (cluster mode,
    issue 24). The writer commits only settled batches, so a rebalance, a restart or a
    rewind runs again the records of the last seconds, and "offline" is judged when the
    step runs: without this mark a member online at the first run and gone by the re-run
    (the replica holding its socket is the one that stopped) would be notified of a
    message it received live. Written after the message's notifications, so a mark that
    survives a store crash means they did too (one commit log)."""

    async def notifications_done(self, room: str, message_id: str) -> bool:
        """Whether the message's notifications were finished."""

    async def mark_notifications_done(self, room: str, message_id: str) -> None:
        """Record that they are (again: no error)."""


#: What :meth:`NotificationRelayState.take_relay` got.
LeaseTaken = Literal["renewed", "taken"] | None


@runtime_checkable
class NotificationRelayState(Protocol):
    """How far the outbox was relayed to a Kafka topic, and who relays it (issue 24): one
    record per ``scope`` (the topic), shared by every replica of the store. The owner holds
    a lease that lapses after ``lease_seconds`` unless renewed, so a dead replica's relay is
    taken over; the position is written only by the lease's owner (fenced in the store)."""

    async def start_relay(self, scope: str) -> None:
        """Create the scope's record at the outbox's current end unless it exists (a new
        topic gets what is written from now on, not the outbox's past)."""

    async def take_relay(self, scope: str, owner: str, lease_seconds: int) -> LeaseTaken:
        """Renew the lease if ``owner`` holds it (``"renewed"``), else take it if nobody
        does or its holder's lapsed (``"taken"``: someone else may have held it since);
        None if another owner holds it."""

    async def relay_position(self, scope: str) -> int:
        """The outbox position relayed so far (every notification up to it is on the topic)."""

    async def record_relayed(self, scope: str, owner: str, position: int) -> bool:
        """Advance the position if ``owner`` still holds the lease; False if it does not."""

    async def release_relay(self, scope: str, owner: str) -> None:
        """Give the lease up (a stopping replica), if ``owner`` holds it."""


class ThreadStore(Protocol):
    """Replies by parent (issue 25): one row per (room, parent, reply), clustered by reply
    id, so a thread pages like history and a page of parents is summarised in one query."""

    async def add_reply(self, room: str, parent_id: str, reply_id: str) -> None:
        """Record ``reply_id`` as a reply to ``parent_id`` (again: no change)."""

    async def thread_summaries(self, room: str, parent_ids: list[str]) -> dict[str, ThreadSummary]:
        """Reply count and newest reply time of each of ``parent_ids`` that has replies."""

    async def replies(self, room: str, parent_id: str, *, before: str | None, limit: int) -> list[str]:
        """Up to ``limit`` reply ids of ``parent_id`` older than ``before`` (or the newest),
        newest first."""


class ReactionStore(Protocol):
    """Reactions (issue 25): one row per (room, message, emoji, user), so a retried react
    changes nothing and counts are counted rows, exact whichever replica wrote them."""

    async def put_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """Add the row; True only for the call that added it."""

    async def delete_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """Remove the row; True only for the call that removed it."""

    async def reaction_counts(self, room: str, message_ids: list[str]) -> dict[str, dict[str, int]]:
        """Per message with reactions: ``{emoji: count}``."""

    async def reactions_of(self, room: str, message_ids: list[str], user_id: str) -> dict[str, list[str]]:
        """Per message ``user_id`` reacted to: its emoji, sorted."""


class MentionStore(Protocol):
    """Who was mentioned where (issue 25), by user and room, for unread mention counts."""

    async def add_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Record that ``message_id`` mentions each of ``user_ids`` (again: no change)."""

    async def unread_mentions(self, room: str, user_id: str, cap: int) -> int:
        """Mentions of ``user_id`` in ``room`` after its read marker, counted up to ``cap``."""


class PinStore(Protocol):
    """Pinned messages (issue 25): one partition per room, bounded by the chat layer."""

    async def put_pin(self, room: str, message_id: str, by: str, at_ms: int) -> bool:
        """Pin; True only for the call that pinned it."""

    async def delete_pin(self, room: str, message_id: str) -> bool:
        """Unpin; True only for the call that unpinned it."""

    async def list_pins(self, room: str, limit: int) -> list[tuple[str, str, int]]:
        """Up to ``limit`` pins of ``room`` as ``(message id, pinned by, at ms)``, newest message first."""


class MessageCleanup(Protocol):
    """What keeps a message's annotations consistent when it is edited or deleted (issue 25)."""

    async def set_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Replace the mentions stored on an existing message (call after a successful edit)."""

    async def remove_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Forget that ``message_id`` mentions each of ``user_ids`` (no error if it did not)."""

    async def clear_reactions(self, room: str, message_id: str) -> None:
        """Remove every reaction of the message (it was deleted)."""


class FlagStore(Protocol):
    """Messages the spam filters caught (issue 25), newest first by room or across rooms.
    Kept :data:`FLAG_RETENTION_SECONDS`; one row per flag (its id is unique)."""

    async def add_flag(self, flag: Flag) -> None:
        """Record ``flag`` (again with the same id: no change)."""

    async def list_flags(self, room: str | None, *, before: str | None, limit: int) -> list[Flag]:
        """Up to ``limit`` flags of ``room`` (None: every room) with ids below ``before``
        (or the newest), newest first."""


#: Flags are evidence for moderators, not history: kept 30 days.
FLAG_RETENTION_SECONDS = 30 * 24 * 3600

#: A flag's columns as both stores keep them, in this order (id, room, user_id, user_name,
#: rule, action, text, message_id, and the time in ms); what :func:`flag_row` gives.
FlagRow = tuple[str, str, str, str, str, str, str, str, int]


def flag_row(flag: Flag) -> FlagRow:
    """The values of a flag's row, in :data:`FlagRow`'s column order."""
    return (
        flag.id,
        flag.room,
        flag.user_id,
        flag.user_name,
        flag.rule,
        flag.action,
        flag.text,
        flag.message_id,
        flag.at_ms,
    )


def event_of_row(room: str, row: Sequence[Any]) -> RoomEvent:
    """A room event read as both stores keep it: ``(id, kind, message_id, payload, pos)``,
    the payload its JSON text."""
    id_, kind, message_id, payload, pos = row
    return RoomEvent(
        str(id_),
        room,
        str(kind),
        str(message_id),
        json.loads(str(payload)),
        None if pos is None else int(pos),
    )


def flag_of_row(row: Sequence[Any]) -> Flag:
    """The flag a row read in :data:`FlagRow`'s column order holds (a null text or message
    id, which CQL may give back for an empty string, reads as empty)."""
    id_, room, user_id, user_name, rule, action, text, message_id, at_ms = row
    return Flag(
        str(id_),
        str(room),
        str(user_id),
        str(user_name),
        str(rule),
        str(action),
        str(text or ""),
        str(message_id or ""),
        int(at_ms),
    )


#: Sentiment is counted in minute slots (the last hour: 60 of them) and hour slots (the
#: last day: 24 of them, the current one included).
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


class RoomModeStore(Protocol):
    """Slow/surge mode per room and rolling sentiment counts (issue 25)."""

    async def get_room_mode(self, room: str) -> RoomMode:
        """The room's mode (the default when none was ever set)."""

    async def set_slow_mode(self, room: str, seconds: int) -> None:
        """Set the moderators' slow mode (0: off); the surge flag is kept."""

    async def set_surge(self, room: str, surge: bool) -> bool:
        """Set the surge flag; True only for the one call that changed it (several replicas
        deciding the same moment: exactly one announces)."""

    async def add_sentiment(self, room: str, sentiment: str, at_ms: int) -> None:
        """Count one ``bullish``/``bearish`` message posted at ``at_ms``."""

    async def sentiment_counts(self, room: str, now_ms: int) -> SentimentCounts:
        """The counts of the last 60 minute slots and the last 24 hour slots up to ``now_ms``."""

    async def count_after(self, room: str, after_id: str, cap: int) -> int:
        """Messages of ``room`` with ids above ``after_id`` (the surge window), counted up to
        ``cap``, reading ids only."""


class MessageStore(
    StoreLifecycle,
    MessageLog,
    RoomDirectory,
    ReadMarkers,
    ModerationStore,
    RoomEventLog,
    RoomStream,
    SessionStore,
    ConversationStore,
    JoinedRooms,
    BlockStore,
    ThreadStore,
    ReactionStore,
    MentionStore,
    PinStore,
    FlagStore,
    MessageCleanup,
    RoomModeStore,
    Protocol,
):
    """Every concern at once: what one backend object implements and the app assembles."""
