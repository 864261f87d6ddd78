"""The wire form of the domain records (chatsvc.chat.wire): timestamps as clients see them."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

from chatsvc.chat.wire import event_wire, iso_ms, message_wire, parse_position, position
from chatsvc.model.messages import Message, RoomEvent


def _reference(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_iso_ms_is_rfc3339_with_milliseconds_whatever_order_it_is_asked_in() -> None:
    """A one-second cache sits behind iso_ms: repeated, alternating and backwards seconds
    must all still format as the plain datetime formatting does."""
    rng = random.Random(3)
    samples = [0, 999, 1000, 1001, -1, -1000, -1001, 1_764_680_000_123, 1_764_680_000_999, 1_764_680_001_000]
    samples += [rng.randrange(0, 4 * 10**12) for _ in range(2000)]
    samples += [1_764_680_000_000 + rng.randrange(0, 3000) for _ in range(2000)]
    for ms in samples:
        assert iso_ms(ms) == _reference(ms), ms
    assert iso_ms(1_764_680_000_123) == "2025-12-02T12:53:20.123Z"


def test_message_wire_shows_optional_fields_only_when_set() -> None:
    plain = Message("01J0000000000000000000000A", "r", "alice", "Alice", "hi", 1_764_680_000_123)
    assert message_wire(plain) == {
        "id": "01J0000000000000000000000A",
        "room": "r",
        "user": {"id": "alice", "name": "Alice"},
        "text": "hi",
        "client_msg_id": None,
        "created_at": "2025-12-02T12:53:20.123Z",
    }
    changed = replace(plain.edited("hey", 1_764_680_001_000), kind="system", deleted=True, client_msg_id="c1")
    wire = message_wire(changed)
    assert (wire["kind"], wire["edited_at"], wire["deleted"], wire["client_msg_id"]) == (
        "system",
        "2025-12-02T12:53:21.000Z",
        True,
        "c1",
    )


def test_positions_round_trip_and_nothing_else_parses() -> None:
    assert position("ab12", 7) == "ab12:7"
    assert parse_position("ab12:7") == ("ab12", 7)
    assert parse_position(position("0" * 32, 10**17)) == ("0" * 32, 10**17)
    for bad in (
        "",
        "ab12",
        "ab12:",
        ":7",
        "AB12:7",
        "ab12:-1",
        "ab12:7:8",
        "a" * 33 + ":1",
        "ab12:" + "9" * 19,
    ):
        assert parse_position(bad) is None, bad


def test_event_wire_names_the_live_event_and_its_position() -> None:
    event = RoomEvent("e1", "r", "deleted", "m1", {"id": "m1", "room": "r", "event_id": "e1"}, pos=4)
    assert event_wire(event, "ep") == {
        "id": "m1",
        "room": "r",
        "event_id": "e1",
        "event": "message_deleted",
        "pos": "ep:4",
    }
    assert "pos" not in event_wire(event, None)
