"""The records of the chat domain, as every store keeps them and the chat layer uses them.

Plain frozen values with no wire form (that is ``chatsvc.chat.wire``) and no storage
detail (that is ``chatsvc.store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class ReplyRef:
    """What a reply shows of its parent (issue 25): its id, author and a short preview,
    copied when the reply is posted so the reply stays readable if the parent goes."""

    id: str
    user_id: str
    user_name: str
    preview: str
    #: The parent was deleted since (set when messages are read, never stored): the preview
    #: is then empty, so a deleted message's text does not live on in its replies.
    deleted: bool = False
    #: Cluster mode: the parent's reply count the sender read before posting (carried in the
    #: reply's log record for readers whose window does not know it; chatsvc.chat.changes).
    #: Never stored, never on the wire.
    base: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A message's replies at a glance: how many, and when the newest was posted."""

    count: int
    last_reply_at_ms: int


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as stored and delivered."""

    id: str
    room: str
    user_id: str
    user_name: str
    text: str
    created_at_ms: int
    client_msg_id: str | None = None
    edited_at_ms: int | None = None
    deleted: bool = False
    kind: str = "user"
    #: Position in the room's stream (chatsvc.store.base.RoomStream), assigned once by the
    #: store when the message is appended; None before that (or for ScyllaDB rows stored
    #: before positions existed). Not part of equality: the id is the message's identity,
    #: the position where the stream put it.
    pos: int | None = field(default=None, compare=False)
    #: The message this one replies to (issue 25); kept by edits.
    reply_to: ReplyRef | None = None
    #: Users the author mentioned (issue 25), as stored: bounded, readers of the room only.
    mentions: tuple[str, ...] = ()
    #: Cashtags the server extracted from the text (issue 25), re-extracted on edit.
    tickers: tuple[str, ...] = ()
    #: The author's ``bullish`` / ``bearish`` mark (issue 25), or None.
    sentiment: str | None = None
    #: Its replies, as the chat layer read them for delivery (not stored with the message).
    thread: ThreadSummary | None = field(default=None, compare=False)
    #: ``{emoji: count}`` and the reader's own emoji, as the chat layer read them for one
    #: reader (not stored with the message).
    reactions: dict[str, int] | None = field(default=None, compare=False)
    own_reactions: list[str] | None = field(default=None, compare=False)

    def edited(self, text: str, at_ms: int, tickers: tuple[str, ...] | None = None) -> Message:
        """This message with ``text`` replaced, edited at ``at_ms`` (and its ``tickers``, when given)."""
        return replace(
            self, text=text, edited_at_ms=at_ms, tickers=self.tickers if tickers is None else tickers
        )


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Newest-first messages and the cursor for the next (older) page, if any."""

    messages: list[Message]
    next_before: str | None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room the store knows of."""

    name: str
    created_at_ms: int
    last_message_id: str | None


@dataclass(frozen=True, slots=True)
class Moderation:
    """A ban (``room`` is ``""``: the whole service) or a mute in one room."""

    kind: str  # "ban" or "mute"
    room: str
    user_id: str
    until_ms: int | None  # None: until lifted
    reason: str = ""

    def active(self, now_ms: int) -> bool:
        """Whether the record still applies at ``now_ms``."""
        return self.until_ms is None or self.until_ms > now_ms


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A change to a stored message (``kind`` ``edited`` or ``deleted``), as delivered live.

    ``id`` is minted like message ids (time-sortable), so replays merge messages and events
    in one id order; ``payload`` is the event's wire form (with ``event_id`` = ``id``).
    """

    id: str
    room: str
    kind: str
    message_id: str
    payload: dict[str, Any]
    #: Position in the room's stream, assigned by the store's ``append_event`` (not part of
    #: equality, like ``Message.pos``).
    pos: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class StreamSlice:
    """What a room stream holds after a position: its records in position order.

    ``records`` are messages (as they are now: an edited message carries its new text) and
    edit/delete events, each with its ``pos``; ``more`` says records beyond ``limit`` exist;
    ``head`` is the room's newest position. ``covered`` is False when the store cannot
    answer from that position (older than what it keeps, or beyond its head): the caller
    resyncs the client instead of answering partially.
    """

    records: list[Message | RoomEvent]
    more: bool
    head: int
    covered: bool = True
    #: The position the answer is complete up to, when that is past its last record (a
    #: store that skipped half-written records after it); None: the last record's.
    upto: int | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A dropped socket's recoverable session: opaque ``data`` (chatsvc.chat.recovery_pos owns
    the format) under an unguessable ``pid``, for ``user_id``, until ``expires_at_ms``."""

    pid: str
    user_id: str
    data: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Flag:
    """A message a spam filter caught (issue 25), kept for moderators (ListFlagged).

    ``action`` is ``rejected`` (not stored) or ``masked`` (stored with the blocked words
    starred: ``message_id`` names it); ``text`` is what the user sent, bounded like any
    message. ``id`` is minted like message ids, so flags list newest first by id.
    """

    id: str
    room: str
    user_id: str
    user_name: str
    rule: str
    action: str
    text: str
    message_id: str
    at_ms: int


_Positioned = TypeVar("_Positioned", bound="Message | RoomEvent")
#: Per record class: its field names, for :func:`at_position`.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def at_position(record: _Positioned, pos: int) -> _Positioned:
    """``dataclasses.replace(record, pos=pos)``, the same copy, without ``replace``'s per-call
    walk over the class's fields (a store positions every record it appends). The records
    have no ``__post_init__`` and every field is an ``__init__`` field, so copying each field
    is what ``replace`` does (tests/model/test_messages.py holds it to that)."""
    cls = type(record)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if hasattr(cls, "__post_init__") or not all(f.init for f in fields(cls)):
            raise TypeError(f"at_position cannot copy {cls.__name__} field by field")
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls) if f.name != "pos")
    copy = object.__new__(cls)
    setattr_ = object.__setattr__  # the records are frozen
    for name in names:
        setattr_(copy, name, getattr(record, name))
    setattr_(copy, "pos", pos)
    return copy
