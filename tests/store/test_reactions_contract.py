"""The reaction store contract (issue 25): SQLite, the real CQL node, and memory."""

from __future__ import annotations

import asyncio
import time

from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.store.base import BUCKET_MS, MessageStore
from chatsvc.store.memory import MemoryStore
from tests.store.conftest import StoreSpec

NOW_MS = int(time.time() * 1000)


async def test_reactions_are_idempotent_per_user_message_and_emoji(store: MessageStore, room: str) -> None:
    old = Message(id_at(NOW_MS - BUCKET_MS), room, "alice", "Alice", "old", NOW_MS - BUCKET_MS)
    new = Message(id_at(NOW_MS - 1000), room, "alice", "Alice", "new", NOW_MS - 1000)
    for m in (old, new):
        await store.append(m)
    assert await store.put_reaction(room, new.id, "🚀", "bob")
    assert not await store.put_reaction(room, new.id, "🚀", "bob"), "a retry adds nothing"
    assert await store.put_reaction(room, new.id, "🚀", "carol")
    assert await store.put_reaction(room, new.id, ":bear:", "bob")
    assert await store.put_reaction(room, old.id, "👍", "bob")
    counts = await store.reaction_counts(room, [old.id, new.id, id_at(NOW_MS)])
    assert counts == {new.id: {"🚀": 2, ":bear:": 1}, old.id: {"👍": 1}}
    assert await store.reactions_of(room, [old.id, new.id], "bob") == {
        new.id: [":bear:", "🚀"],
        old.id: ["👍"],
    }
    assert await store.reactions_of(room, [old.id, new.id], "carol") == {new.id: ["🚀"]}
    assert await store.reactions_of(room, [], "carol") == {}
    assert await store.reaction_counts(room, []) == {}
    assert await store.delete_reaction(room, new.id, "🚀", "bob")
    assert not await store.delete_reaction(room, new.id, "🚀", "bob"), "a retry removes nothing"
    assert not await store.delete_reaction(room, new.id, "🚀", "dave")
    assert (await store.reaction_counts(room, [new.id])) == {new.id: {"🚀": 1, ":bear:": 1}}
    assert await store.reactions_of(room, [new.id], "bob") == {new.id: [":bear:"]}


async def test_concurrent_reacts_from_two_store_objects_count_exactly(spec: StoreSpec, room: str) -> None:
    """Two connections (as two replicas have), each user reacting twice at once: every add
    reports once, the count is the number of distinct users."""
    first, second = spec.make(), spec.make()
    await first.open()
    await second.open()
    try:
        await first.migrate()
        message = Message(id_at(NOW_MS - 500), room, "alice", "Alice", "hot", NOW_MS - 500)
        await first.append(message)
        users = [f"u{i}" for i in range(12)]
        added = await asyncio.gather(
            *(s.put_reaction(room, message.id, "🔥", u) for u in users for s in (first, second))
        )
        assert sum(added) == len(users)
        assert await second.reaction_counts(room, [message.id]) == {message.id: {"🔥": len(users)}}
        removed = await asyncio.gather(
            *(s.delete_reaction(room, message.id, "🔥", u) for u in users[:5] for s in (first, second))
        )
        assert sum(removed) == 5
        assert await first.reaction_counts(room, [message.id]) == {message.id: {"🔥": len(users) - 5}}
    finally:
        await first.aclose()
        await second.aclose()


async def test_pins_are_idempotent_and_listed_newest_first(store: MessageStore, room: str) -> None:
    ids = [id_at(NOW_MS - 700 + i) for i in range(3)]
    assert all(await asyncio.gather(*(store.put_pin(room, m, "mod", NOW_MS) for m in ids)))
    assert not await store.put_pin(room, ids[0], "other", NOW_MS + 1), "pinned already"
    assert await store.list_pins(room, 10) == [(m, "mod", NOW_MS) for m in reversed(ids)]
    assert await store.list_pins(room, 2) == [(m, "mod", NOW_MS) for m in reversed(ids)][:2]
    assert await store.delete_pin(room, ids[1])
    assert not await store.delete_pin(room, ids[1])
    assert [p[0] for p in await store.list_pins(room, 10)] == [ids[2], ids[0]]
    assert await store.list_pins(f"{room}-other", 10) == []


async def test_memory_store_keeps_the_same_contract() -> None:
    store = MemoryStore()
    await store.open()
    assert await store.put_reaction("r", "m", "🚀", "a")
    assert not await store.put_reaction("r", "m", "🚀", "a")
    assert await store.reaction_counts("r", ["m", "x"]) == {"m": {"🚀": 1}}
    assert await store.reactions_of("r", ["m"], "a") == {"m": ["🚀"]}
    assert await store.delete_reaction("r", "m", "🚀", "a")
    assert await store.reaction_counts("r", ["m"]) == {}
    assert await store.put_pin("r", "m", "a", 1)
    assert not await store.put_pin("r", "m", "a", 1)
    assert await store.list_pins("r", 5) == [("m", "a", 1)]
    assert await store.delete_pin("r", "m")
    assert await store.list_pins("r", 5) == []
