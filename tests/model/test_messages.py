"""chatsvc.model.messages: at_position is dataclasses.replace(record, pos=...), field for field."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from chatsvc.model.messages import Message, ReplyRef, RoomEvent, ThreadSummary, at_position


def every_field(record: Message | RoomEvent) -> dict[str, object]:
    """All fields, including those left out of equality (``pos``, the read annotations)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


FULL = Message(
    id="01J00000000000000000000000",
    room="r",
    user_id="alice",
    user_name="Alice",
    text="hi $AAPL",
    created_at_ms=1,
    client_msg_id="c-1",
    edited_at_ms=2,
    deleted=True,
    kind="system",
    pos=3,
    reply_to=ReplyRef("01J00000000000000000000001", "bob", "Bob", "pre", deleted=True),
    mentions=("bob",),
    tickers=("AAPL",),
    sentiment="bullish",
    thread=ThreadSummary(2, 5),
    reactions={"👍": 2},
    own_reactions=["👍"],
)


@pytest.mark.parametrize(
    "record",
    [
        FULL,
        Message("01J00000000000000000000002", "r", "u", "U", "plain", 7),
        RoomEvent("01J00000000000000000000003", "r", "edited", "m", {"text": "x"}),
        RoomEvent("01J00000000000000000000004", "r", "deleted", "m", {}, pos=9),
    ],
)
def test_at_position_is_replace(record: Message | RoomEvent) -> None:
    positioned = at_position(record, 42)
    assert type(positioned) is type(record)
    assert every_field(positioned) == every_field(replace(record, pos=42))
    assert positioned.pos == 42 and record.pos != 42  # a copy: the original keeps its own


def test_every_field_is_copied_even_new_ones() -> None:
    """The copy walks the class's fields: a field added later is carried without a change
    here (the test fails if a record grows a ``__post_init__`` or a non-init field)."""
    names = {f.name for f in fields(Message)}
    assert set(every_field(at_position(FULL, 1))) == names
    assert all(f.init for f in fields(Message)) and not hasattr(Message, "__post_init__")
    assert all(f.init for f in fields(RoomEvent)) and not hasattr(RoomEvent, "__post_init__")
