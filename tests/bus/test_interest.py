"""Which partitions routing reads (chatsvc.bus.interest), with an in-memory partitioner."""

from __future__ import annotations

from chatsvc.bus.interest import PartitionInterest


def test_rooms_with_members_and_held_partitions_are_wanted_until_the_grace_runs_out() -> None:
    rooms = {"a"}
    interest = PartitionInterest(lambda room: {"a": 0, "b": 1, "c": 2}[room], lambda: set(rooms), 10.0)
    assert interest.wanted(0.0) == {0}
    interest.hold(interest.partition_of("b"), 1.0)  # a send to b, nobody here in it
    assert interest.wanted(5.0) == {0, 1}
    rooms.clear()  # a's last member left at about 5 s
    assert interest.wanted(10.9) == {0, 1}
    assert interest.wanted(11.0) == {0}  # b's hold (1 + 10) is over
    assert interest.wanted(15.0) == set()  # a's, last seen wanted at 5 s
    rooms.add("c")
    assert interest.wanted(16.0) == {2}
