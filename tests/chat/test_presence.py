"""LocalPresence: per-user counts across several sockets."""

from __future__ import annotations

from chatsvc.auth.identity import Identity
from chatsvc.chat.presence import LocalPresence

ALICE = Identity("alice", "Alice")
BOB = Identity("bob", "Bob")


async def test_first_and_last_socket_of_a_user_change_presence() -> None:
    p = LocalPresence()
    first = await p.join("r", ALICE, "s1")
    assert (first.changed, first.online) == (True, 1)
    second_tab = await p.join("r", ALICE, "s2")
    assert (second_tab.changed, second_tab.online) == (False, 1)
    bob = await p.join("r", BOB, "s3")
    assert (bob.changed, bob.online) == (True, 2)
    assert await p.members("r") == [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]
    assert await p.rooms() == {"r": 2}
    assert await p.user_count() == 2
    await p.join("q", BOB, "s3")
    assert p.room_count() == p.local_room_count() == 2
    await p.leave("q", BOB, "s3")
    assert p.room_count() == p.local_room_count() == 1

    closed_tab = await p.leave("r", ALICE, "s1")
    assert (closed_tab.changed, closed_tab.online) == (False, 2)
    gone = await p.leave("r", ALICE, "s2")
    assert (gone.changed, gone.online) == (True, 1)
    assert await p.online("r") == 1
    await p.leave("r", BOB, "s3")
    assert await p.rooms() == {} and p.room_count() == 0
    assert await p.online("r") == 0
    assert await p.members("r") == []


async def test_leave_of_an_unknown_socket_changes_nothing() -> None:
    p = LocalPresence()
    assert (await p.leave("nowhere", ALICE, "s1")).changed is False
    await p.join("r", ALICE, "s1")
    repeat = await p.join("r", ALICE, "s1")
    assert repeat.changed is False
    unknown = await p.leave("r", ALICE, "other")
    assert (unknown.changed, unknown.online) == (False, 1)


async def test_a_user_with_one_socket_holds_no_set_and_repeats_change_nothing() -> None:
    p = LocalPresence()
    assert (await p.join("r", ALICE, "s1")).changed
    assert not (await p.join("r", ALICE, "s1")).changed  # the same socket again
    assert p._rooms["r"].users == {"alice": "s1"}  # the sid itself: no set per idle user
    assert not (await p.leave("r", ALICE, "s9")).changed  # not one of hers
    assert not (await p.join("r", ALICE, "s2")).changed
    assert p._rooms["r"].users == {"alice": {"s1", "s2"}}
    assert not (await p.leave("r", ALICE, "s2")).changed
    assert not (await p.leave("r", ALICE, "s2")).changed  # twice
    gone = await p.leave("r", ALICE, "s1")
    assert (gone.changed, gone.online) == (True, 0)
    assert await p.rooms() == {}
