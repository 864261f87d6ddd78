"""The edit/delete consistency contract (issue 25): SQLite, the real CQL node, and memory.
A message's mentions replaced, mention rows removed, reactions cleared."""

from __future__ import annotations

import time

from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.store.base import BUCKET_MS, MessageStore
from chatsvc.store.memory import MemoryStore

NOW_MS = int(time.time() * 1000)


async def _contract(store: MessageStore, room: str) -> None:
    old = Message(
        id_at(NOW_MS - BUCKET_MS), room, "alice", "Alice", "old", NOW_MS - BUCKET_MS, mentions=("bob",)
    )
    new = Message(
        id_at(NOW_MS - 1000), room, "alice", "Alice", "new", NOW_MS - 1000, mentions=("bob", "carol")
    )
    for m in (old, new):
        await store.append(m)
    await store.add_mentions(room, old.id, old.mentions)
    await store.add_mentions(room, new.id, new.mentions)
    assert await store.unread_mentions(room, "bob", 10) == 2

    await store.set_mentions(room, new.id, ("carol", "dave"))
    got = await store.get(room, new.id)
    assert got is not None and got.mentions == ("carol", "dave") and got.text == "new"
    await store.set_mentions(room, new.id, ())
    got = await store.get(room, new.id)
    assert got is not None and got.mentions == ()
    assert [m.mentions for m in (await store.history(room, before=None, limit=5)).messages] == [(), ("bob",)]

    await store.remove_mentions(room, new.id, ("bob", "erin"))  # erin never was: no error
    assert await store.unread_mentions(room, "bob", 10) == 1
    assert await store.unread_mentions(room, "carol", 10) == 1
    await store.remove_mentions(room, old.id, ("bob",))
    assert await store.unread_mentions(room, "bob", 10) == 0

    for user in ("bob", "carol"):
        await store.put_reaction(room, new.id, "🚀", user)
        await store.put_reaction(room, old.id, "👍", user)
    await store.put_reaction(room, new.id, ":bear:", "bob")
    await store.clear_reactions(room, new.id)
    assert await store.reaction_counts(room, [old.id, new.id]) == {old.id: {"👍": 2}}
    assert await store.reactions_of(room, [old.id, new.id], "bob") == {old.id: ["👍"]}
    await store.clear_reactions(room, new.id)  # again: nothing left, no error
    assert await store.put_reaction(room, new.id, "🚀", "bob"), "the row is really gone"


async def test_mentions_replaced_removed_and_reactions_cleared(store: MessageStore, room: str) -> None:
    await _contract(store, room)


async def test_memory_store_keeps_the_contract(room: str) -> None:
    store = MemoryStore()
    await store.open()
    await _contract(store, room)
