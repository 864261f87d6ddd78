"""Which partitions routing reads (chatsvc.bus.interest), with an in-memory partitioner."""

from __future__ import annotations

from chatsvc.bus.interest import MemberRooms, PartitionInterest


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


def test_member_rooms_are_interest_while_their_user_is_present_and_forgotten_after_the_grace() -> None:
    members = MemberRooms(per_user=3, grace=30.0)
    present = {"alice", "bob"}
    members.set("alice", ["d1", "d2"], 0.0)
    members.set("bob", ["d2", "p1", "p2", "p3", "p4"], 0.0)  # past per_user: 3 kept
    members.add("alice", "p9", 1.0)  # added while connected
    assert sorted(members.rooms(present.__contains__, 2.0)) == sorted(["d1", "d2", "p9", "d2", "p1", "p2"])
    members.discard("alice", "d1")  # removed from d1
    assert sorted(members.rooms({"alice"}.__contains__, 3.0)) == ["d2", "p9"]
    # bob's last socket went at about 2 s: he is not interest, and forgotten after the grace
    assert len(members) == 2
    assert sorted(members.rooms({"alice"}.__contains__, 31.9)) == ["d2", "p9"]
    assert len(members) == 2
    assert sorted(members.rooms({"alice"}.__contains__, 32.0)) == ["d2", "p9"]
    assert len(members) == 1  # bob (last seen 2 s) gone; alice (present) kept
    members.add("alice", "x1", 33.0)
    members.add("alice", "x2", 33.0)  # a 4th room: over per_user, not kept
    assert sorted(members.rooms({"alice"}.__contains__, 34.0)) == ["d2", "p9", "x1"]


def test_a_user_registered_just_before_her_socket_is_in_her_room_is_not_forgotten_at_once() -> None:
    members = MemberRooms(per_user=10, grace=30.0)
    members.set("carol", ["d1"], 100.0)  # the enter hook runs before the socket is in @u:carol
    assert list(members.rooms(lambda _u: False, 100.5)) == []
    assert list(members.rooms(lambda _u: True, 101.0)) == ["d1"]
