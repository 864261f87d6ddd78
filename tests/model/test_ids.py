"""Message ids: unique, time-sortable, and carrying their timestamp."""

from __future__ import annotations

import random

from chatsvc.model import ids
from chatsvc.model.ids import ID_LENGTH, MessageIdGenerator, is_message_id, lowest_id_at, timestamp_ms


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


def test_ids_are_crockford_base32_of_their_value_digit_by_digit() -> None:
    """The 13-pair encoder writes exactly the 26 base32 digits of the 130-bit value."""
    rng = random.Random(7)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for value in [0, 1, 31, 32, 1023, 1024, 2**128 - 1, *(rng.getrandbits(128) for _ in range(2000))]:
        expected = "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))
        assert ids._encode(value) == expected
        assert ids.id_value(expected) == value


def test_two_generators_do_not_repeat_each_others_ids() -> None:
    """Seeded from the OS each: two replicas in the same millisecond still differ."""
    frozen = lambda: 1_700_000_000.0  # noqa: E731
    a, b = ids.MessageIdGenerator(frozen), ids.MessageIdGenerator(frozen)
    assert not {a.new() for _ in range(500)} & {b.new() for _ in range(500)}
