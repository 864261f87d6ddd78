"""The thread store contract (issue 25): SQLite, the real CQL node, and memory."""

from __future__ import annotations

import asyncio
import time

from chatsvc.model.ids import id_at, timestamp_ms
from chatsvc.model.messages import Message, ReplyRef, ThreadSummary
from chatsvc.store.base import BUCKET_MS, MessageStore
from chatsvc.store.memory import MemoryStore

NOW_MS = int(time.time() * 1000)


def reply(room: str, ms: int, parent: Message) -> Message:
    ref = ReplyRef(parent.id, parent.user_id, parent.user_name, parent.text[:10])
    return Message(id_at(ms), room, "bob", "Bob", f"re at {ms}", ms, reply_to=ref)


async def test_reply_reference_round_trips_and_survives_edit_and_parent_delete(
    store: MessageStore, room: str
) -> None:
    parent = Message(id_at(NOW_MS - 5000), room, "alice", "Alice", "$AAPL to the moon", NOW_MS - 5000)
    await store.append(parent)
    child = reply(room, NOW_MS - 4000, parent)
    stored, created = await store.append(child)
    assert created and stored.reply_to == child.reply_to
    assert (await store.get(room, child.id)) == child
    edited = await store.edit(room, child.id, "changed", NOW_MS)
    assert edited.reply_to == child.reply_to and edited.text == "changed"
    await store.delete(room, parent.id, NOW_MS)
    again = await store.get(room, child.id)
    assert again is not None and again.reply_to == child.reply_to and again.text == "changed"
    page = await store.history(room, before=None, limit=5)
    assert [m.reply_to for m in page.messages] == [child.reply_to, None]


async def test_replies_page_and_summaries_count_each_reply_once(store: MessageStore, room: str) -> None:
    # One parent in an older bucket than the other: summaries span buckets.
    old = Message(id_at(NOW_MS - BUCKET_MS), room, "alice", "Alice", "old", NOW_MS - BUCKET_MS)
    new = Message(id_at(NOW_MS - 9000), room, "alice", "Alice", "new", NOW_MS - 9000)
    lonely = Message(id_at(NOW_MS - 8500), room, "alice", "Alice", "nobody replies", NOW_MS - 8500)
    for m in (old, new, lonely):
        await store.append(m)
    replies = [reply(room, NOW_MS - 8000 + i, old if i % 2 else new) for i in range(7)]
    for r in replies:
        await store.append(r)
        assert r.reply_to is not None
        await store.add_reply(room, r.reply_to.id, r.id)
    # Retries (also concurrent ones) change nothing.
    await asyncio.gather(
        *(store.add_reply(room, new.id, r.id) for r in replies if r.reply_to == replies[0].reply_to)
    )
    of_new = [r.id for r in replies if r.reply_to is not None and r.reply_to.id == new.id]
    of_old = [r.id for r in replies if r.reply_to is not None and r.reply_to.id == old.id]
    found = await store.thread_summaries(room, [old.id, new.id, lonely.id, id_at(NOW_MS)])
    assert found == {
        new.id: ThreadSummary(len(of_new), timestamp_ms(of_new[-1])),
        old.id: ThreadSummary(len(of_old), timestamp_ms(of_old[-1])),
    }
    assert await store.thread_summaries(room, []) == {}
    assert await store.thread_summaries(f"{room}-other", [new.id]) == {}
    first = await store.replies(room, new.id, before=None, limit=3)
    assert first == list(reversed(of_new))[:3]
    rest = await store.replies(room, new.id, before=first[-1], limit=3)
    assert rest == list(reversed(of_new))[3:]
    assert await store.replies(room, lonely.id, before=None, limit=3) == []


async def test_mentions_round_trip(store: MessageStore, room: str) -> None:
    plain = Message(id_at(NOW_MS - 300), room, "alice", "Alice", "no one", NOW_MS - 300)
    named = Message(
        id_at(NOW_MS - 200), room, "alice", "Alice", "hi @bob", NOW_MS - 200, mentions=("bob", "c d")
    )
    for m in (plain, named):
        await store.append(m)
    assert (await store.get(room, named.id)) == named
    page = await store.history(room, before=None, limit=5)
    assert [m.mentions for m in page.messages] == [("bob", "c d"), ()]
    assert (await store.edit(room, named.id, "hi", NOW_MS)).mentions == ("bob", "c d")


async def test_unread_mentions_count_after_the_read_marker(store: MessageStore, room: str) -> None:
    ids = [id_at(NOW_MS - 900 + i) for i in range(4)]
    for i, message_id in enumerate(ids):
        await store.add_mentions(room, message_id, ("bob",) if i % 2 else ("bob", "carol"))
    await store.add_mentions(room, ids[0], ("bob",))  # again: no change
    await store.add_mentions(room, ids[0], ())
    assert await store.unread_mentions(room, "bob", 100) == 4
    assert await store.unread_mentions(room, "bob", 3) == 3
    assert await store.unread_mentions(room, "carol", 100) == 2
    assert await store.unread_mentions(f"{room}-other", "bob", 100) == 0
    await store.mark_read(room, "bob", ids[1])
    assert await store.unread_mentions(room, "bob", 100) == 2
    assert await store.unread_mentions(room, "carol", 100) == 2


async def test_memory_store_keeps_the_same_contract() -> None:
    store = MemoryStore()
    await store.open()
    parent = Message(id_at(NOW_MS - 10), "r", "a", "A", "p", NOW_MS - 10)
    child = reply("r", NOW_MS - 5, parent)
    await store.append(parent)
    await store.append(child)
    await store.add_reply("r", parent.id, child.id)
    await store.add_reply("r", parent.id, child.id)
    assert await store.thread_summaries("r", [parent.id]) == {parent.id: ThreadSummary(1, NOW_MS - 5)}
    assert await store.replies("r", parent.id, before=None, limit=5) == [child.id]
    assert await store.replies("r", parent.id, before=child.id, limit=5) == []
    assert (await store.get("r", child.id)) == child
    await store.add_mentions("r", child.id, ("x",))
    assert await store.unread_mentions("r", "x", 10) == 1
    await store.mark_read("r", "x", child.id)
    assert await store.unread_mentions("r", "x", 10) == 0
