"""Rows of the Scylla store: message and event rows decoded, message ids checked and
mapped to their bucket and to write timestamps (shared by :mod:`.store` and its mixins)."""

from __future__ import annotations

from typing import Final

from chatsvc.errors import InvalidMessageId
from chatsvc.model.ids import id_value, is_message_id, timestamp_ms
from chatsvc.model.messages import Message
from chatsvc.store.base import bucket_of, decode_mentions, decode_reply
from chatsvc.store.scylla.driver import Row

#: Rows per query at most. Longer reads page on by clustering key (keyset paging, resumable
#: and stateless), so no result ever exceeds one driver page and no paging state is needed.
SCAN_CHUNK: Final = 1000


def id_write_time(message_id: str) -> int:
    """A CQL write timestamp (microseconds) that orders exactly like message ids.

    The id's millisecond times 1000, plus its top ten random bits scaled into 0..999: ids of
    one millisecond still map in order, and equal timestamps fall back to CQL's tie-break
    (the larger value wins), which for ids is again the later one.
    """
    value = id_value(message_id)
    return (value >> 80) * 1000 + ((((value >> 70) & 0x3FF) * 1000) >> 10)


def checked_id(message_id: str) -> str:
    """``message_id`` itself, or :class:`~chatsvc.errors.InvalidMessageId` if it is not one."""
    if not is_message_id(message_id):
        raise InvalidMessageId("not a message id")
    return message_id


def message_bucket(message_id: str) -> int:
    """The bucket (partition part) of a message or event id; the id is checked first."""
    return bucket_of(timestamp_ms(checked_id(message_id)))


def message_from_row(room: str, row: Row) -> Message:
    """A ``messages`` row (the columns of the ``msg_*`` reads, in order) as a Message."""
    id_, user_id, user_name, text, created, client_msg_id, edited, deleted, kind, pos, reply, mentioned = row[
        :12
    ]
    tickers, sentiment = row[12:14]
    gone = bool(deleted)
    return Message(
        id=str(id_),
        room=room,
        user_id=str(user_id),
        user_name=str(user_name or ""),
        text="" if gone else str(text or ""),
        created_at_ms=int(created) if created is not None else timestamp_ms(str(id_)),
        client_msg_id=None if client_msg_id is None else str(client_msg_id),
        edited_at_ms=None if edited is None else int(edited),
        deleted=gone,
        kind=str(kind or "user"),
        pos=None if pos is None else int(pos),
        reply_to=decode_reply(reply),
        mentions=decode_mentions(mentioned),
        tickers=decode_mentions(tickers),
        sentiment=None if sentiment is None else str(sentiment),
    )


def messages_from_rows(room: str, rows: list[Row]) -> list[Message]:
    """The messages of ``rows``, leaving out partial rows."""
    # A row without an author would be a partial row resurrected by an update racing a
    # delete (Discord's failure mode); our deletes are updates, but never show one.
    return [message_from_row(room, r) for r in rows if r[1] is not None]
