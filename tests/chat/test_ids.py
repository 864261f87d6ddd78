"""Message ids: unique, time-sortable, and carrying their timestamp."""

from __future__ import annotations

from chatsvc.chat.ids import ID_LENGTH, MessageIdGenerator, is_message_id, lowest_id_at, timestamp_ms


def test_ids_are_strictly_increasing_within_one_millisecond() -> None:
    gen = MessageIdGenerator(clock=lambda: 1_700_000_000.0)
    ids = [gen.new() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_message_id(i) and len(i) == ID_LENGTH for i in ids)


def test_ids_survive_a_clock_going_backwards() -> None:
    times = iter([1_700_000_001.0, 1_700_000_000.0, 1_700_000_000.0])
    gen = MessageIdGenerator(clock=lambda: next(times))
    a, b, c = gen.new(), gen.new(), gen.new()
    assert a < b < c


def test_timestamp_round_trip_and_range_bound() -> None:
    ms = 1_700_000_123_456
    message_id = MessageIdGenerator(clock=lambda: ms / 1000).new()
    assert timestamp_ms(message_id) == ms
    low = lowest_id_at(ms)
    assert is_message_id(low)
    assert timestamp_ms(low) == ms
    assert low <= message_id < lowest_id_at(ms + 1)


def test_is_message_id_rejects_other_shapes() -> None:
    good = MessageIdGenerator().new()
    for bad in (None, 5, "", good[:-1], good + "0", good.lower(), "8" + good[1:], good[:-1] + "I"):
        assert not is_message_id(bad)
