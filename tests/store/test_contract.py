"""The store contract: every test here runs against SQLite and against the real CQL node."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from chatsvc.errors import NotFound
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message, Moderation
from chatsvc.store.base import BUCKET_MS, MessageStore, bucket_of
from tests.conftest import ServerFactory
from tests.store.conftest import StoreSpec
from tests.support.clients import ClientPool
from tests.support.tokens import token

NOW_MS = int(time.time() * 1000)
#: Far more empty buckets than any store may skip in one history call.
LONG_GAP_BUCKETS = 25


def msg(room: str, ms: int, user: str = "alice", text: str | None = None, cmid: str | None = None) -> Message:
    """A message created at ``ms`` (its id carries that time, hence its bucket)."""
    return Message(
        id=id_at(ms),
        room=room,
        user_id=user,
        user_name=user.title(),
        text=text if text is not None else f"text at {ms}",
        created_at_ms=ms,
        client_msg_id=cmid,
    )


def at_bucket(offset: int, within_ms: int = 0) -> int:
    """A time ``offset`` buckets from now's bucket (negative: older), ``within_ms`` into it."""
    return (bucket_of(NOW_MS) + offset) * BUCKET_MS + within_ms


async def all_pages(store: MessageStore, room: str, limit: int) -> list[str]:
    """Follow ``next_before`` to the end; short (even empty) pages are allowed."""
    ids: list[str] = []
    before = None
    for _ in range(500):
        page = await store.history(room, before=before, limit=limit)
        assert len(page.messages) <= limit
        ids.extend(m.id for m in page.messages)
        if page.next_before is None:
            return ids
        assert before is None or page.next_before < before, "the cursor must move back"
        before = page.next_before
    raise AssertionError("history paging did not end")


async def test_write_and_read_back(store: MessageStore, room: str) -> None:
    sent = [msg(room, NOW_MS - 3000 + i, text=f"hello {i}", cmid=f"c{i}") for i in range(3)]
    for m in sent:
        stored, created = await store.append(m)
        assert created and stored == m
    for m in sent:
        assert await store.get(room, m.id) == m
    page = await store.history(room, before=None, limit=10)
    assert page.messages == list(reversed(sent))
    assert page.next_before is None
    assert await store.get(room, id_at(NOW_MS)) is None
    assert await store.get(f"{room}-other", sent[0].id) is None
    empty = await store.history(f"{room}-never", before=None, limit=10)
    assert empty.messages == [] and empty.next_before is None


async def test_unicode_and_system_messages_round_trip(store: MessageStore, room: str) -> None:
    m = Message(
        id=id_at(NOW_MS),
        room=room,
        user_id="system",
        user_name="Système 🤖",
        text="$TSLA 🚀 ünïcödé \"quotes\" 'single' \\ back\nslash",
        created_at_ms=NOW_MS,
        kind="system",
    )
    await store.append(m)
    assert await store.get(room, m.id) == m
    assert (await store.history(room, before=None, limit=1)).messages == [m]


async def test_paging_across_buckets_has_no_gap_or_duplicate(store: MessageStore, room: str) -> None:
    times = (
        [at_bucket(-LONG_GAP_BUCKETS - 3, 1000 + i) for i in range(2)]  # behind a long empty gap
        + [at_bucket(-3, BUCKET_MS - 5 + i) for i in range(3)]  # the last ms of a bucket
        + [at_bucket(-2, i) for i in range(3)]  # the first ms of the next one
        + [at_bucket(0, 10 + i) for i in range(4)]
    )
    times = [t for t in times if t <= NOW_MS] + [NOW_MS - 1]
    messages = [msg(room, t) for t in times]
    # Out of order on purpose: the room's first bucket and last id must still end up right.
    for m in messages[len(messages) // 2 :] + messages[: len(messages) // 2]:
        await store.append(m)
    expected = sorted((m.id for m in messages), reverse=True)
    for limit in (1, 2, 3, 4, 5, 100):
        assert await all_pages(store, room, limit) == expected, f"limit {limit}"
    # A cursor in the middle (a bucket boundary) continues exactly there.
    boundary = sorted(messages, key=lambda m: m.id)[5]
    page = await store.history(room, before=boundary.id, limit=3)
    older = [i for i in expected if i < boundary.id]
    assert [m.id for m in page.messages] == older[:3]
    info = await store.get_room(room)
    assert info is not None and info.last_message_id == expected[0]


async def test_first_page_of_a_quiet_room_and_a_cursor_past_its_newest_message(
    store: MessageStore, room: str
) -> None:
    """A room silent for longer than a bucket: the page is not in the current bucket (a
    store that guesses it there must walk back), nor in a cursor's bucket above the room's
    newest message."""
    messages = [msg(room, at_bucket(-3, 50 + i)) for i in range(3)] + [msg(room, at_bucket(-2, 7))]
    for m in messages:
        await store.append(m)
    newest_first = sorted((m.id for m in messages), reverse=True)
    page = await store.history(room, before=None, limit=2)
    assert [m.id for m in page.messages] == newest_first[:2] and page.next_before == newest_first[1]
    later = id_at(NOW_MS - 1)  # a cursor newer than everything in the room
    page = await store.history(room, before=later, limit=3)
    assert [m.id for m in page.messages] == newest_first[:3]
    assert await all_pages(store, room, 1) == newest_first
    assert (await store.history(f"{room}-never", before=later, limit=5)).messages == []


async def test_idempotent_retry(store: MessageStore, room: str) -> None:
    first = msg(room, NOW_MS - 100, cmid="client-1")
    stored, created = await store.append(first)
    assert created and stored == first
    retry = msg(room, NOW_MS - 50, cmid="client-1", text="a retry may differ in id and time")
    again, created = await store.append(retry)
    assert not created and again == first
    other_user = msg(room, NOW_MS - 40, user="bob", cmid="client-1")
    assert (await store.append(other_user))[1] is True
    other_room = msg(f"{room}-b", NOW_MS - 30, cmid="client-1")
    assert (await store.append(other_room))[1] is True
    no_key = [msg(room, NOW_MS - 20 + i) for i in range(2)]
    for m in no_key:
        assert (await store.append(m))[1] is True
    ids = await all_pages(store, room, 100)
    assert ids == sorted([first.id, other_user.id, *(m.id for m in no_key)], reverse=True)


async def test_catch_up_with_since(store: MessageStore, room: str) -> None:
    times = [at_bucket(-LONG_GAP_BUCKETS - 1, 5), at_bucket(-4, 7), at_bucket(-4, 8), at_bucket(-1, 1)]
    times += [NOW_MS - 3, NOW_MS - 2, NOW_MS - 1]
    messages = [msg(room, t) for t in times]
    for m in messages:
        await store.append(m)
    ids = [m.id for m in messages]
    assert [m.id for m in await store.after(room, ids[0], 100)] == ids[1:]
    assert [m.id for m in await store.after(room, ids[2], 2)] == ids[3:5]
    assert [m.id for m in await store.after(room, ids[-1], 100)] == []
    older_than_all = id_at(at_bucket(-LONG_GAP_BUCKETS - 10))
    assert [m.id for m in await store.after(room, older_than_all, 3)] == ids[:3]
    assert await store.after(f"{room}-never", ids[0], 10) == []


async def test_edit(store: MessageStore, room: str) -> None:
    m = msg(room, at_bucket(-1, 99), text="original")
    await store.append(m)
    edited = await store.edit(room, m.id, "edited text", NOW_MS)
    assert edited.text == "edited text" and edited.edited_at_ms == NOW_MS and not edited.deleted
    assert edited.id == m.id and edited.user_id == m.user_id and edited.created_at_ms == m.created_at_ms
    assert await store.get(room, m.id) == edited
    assert (await store.history(room, before=None, limit=5)).messages == [edited]
    with pytest.raises(NotFound):
        await store.edit(room, id_at(NOW_MS), "nope", NOW_MS)
    # An edit of a missing message must not create one.
    assert (await store.history(room, before=None, limit=5)).messages == [edited]


async def test_delete(store: MessageStore, room: str) -> None:
    keep, gone = msg(room, NOW_MS - 20), msg(room, NOW_MS - 10, text="regrettable")
    for m in (keep, gone):
        await store.append(m)
    deleted = await store.delete(room, gone.id, NOW_MS)
    assert deleted.deleted and deleted.text == "" and deleted.id == gone.id
    assert deleted.user_id == gone.user_id
    assert await store.get(room, gone.id) == deleted
    page = await store.history(room, before=None, limit=5)
    assert [m.id for m in page.messages] == [gone.id, keep.id]
    assert page.messages[0].deleted and page.messages[0].text == ""
    with pytest.raises(NotFound):
        await store.edit(room, gone.id, "resurrect?", NOW_MS + 1)
    again = await store.delete(room, gone.id, NOW_MS + 2)  # deleting twice is harmless
    assert again.deleted and again.text == ""
    with pytest.raises(NotFound):
        await store.delete(room, id_at(NOW_MS), NOW_MS)
    assert [m.id for m in (await store.history(room, before=None, limit=5)).messages] == [gone.id, keep.id]


async def test_edit_racing_delete_never_brings_text_back(store: MessageStore, room: str) -> None:
    for i in range(8):
        m = msg(room, NOW_MS - 100 + i, text=f"secret {i}")
        await store.append(m)
        outcomes = await asyncio.gather(
            store.edit(room, m.id, f"edited secret {i}", NOW_MS + i),
            store.delete(room, m.id, NOW_MS + i),
            return_exceptions=True,
        )
        for outcome in outcomes:
            assert isinstance(outcome, Message | NotFound), outcome
        final = await store.get(room, m.id)
        assert final is not None and final.deleted and final.text == "", final


async def test_unread_counts(store: MessageStore, room: str) -> None:
    alice = [msg(room, t, user="alice") for t in (at_bucket(-3, 1), at_bucket(-1, 1), NOW_MS - 30)]
    bob = msg(room, NOW_MS - 20, user="bob")
    late = msg(room, NOW_MS - 10, user="alice")
    for m in [*alice, bob, late]:
        await store.append(m)
    assert await store.unread_count(room, "bob", 100) == 4  # no marker: everything by others
    assert await store.unread_count(room, "alice", 100) == 1
    assert await store.unread_count(room, "carol", 100) == 5
    assert await store.unread_count(room, "carol", 2) == 2  # capped
    await store.mark_read(room, "bob", alice[1].id)
    assert await store.unread_count(room, "bob", 100) == 2
    await store.mark_read(room, "bob", alice[0].id)  # never moves back
    assert await store.unread_count(room, "bob", 100) == 2
    await store.delete(room, late.id, NOW_MS)  # deleted messages are not unread
    assert await store.unread_count(room, "bob", 100) == 1
    await store.mark_read(room, "bob", bob.id)
    assert await store.unread_count(room, "bob", 100) == 0
    await store.mark_read(room, "alice", late.id)
    assert await store.unread_count(room, "alice", 100) == 0
    assert await store.unread_count(f"{room}-never", "bob", 100) == 0


async def test_moderation_records(store: MessageStore, room: str) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert await store.get_moderation("mute", room, user) is None
    mute = Moderation("mute", room, user, NOW_MS + 60_000, "spam")
    await store.set_moderation(mute)
    assert await store.get_moderation("mute", room, user) == mute
    forever = Moderation("mute", room, user, None, "")
    await store.set_moderation(forever)  # replace, including "until lifted"
    assert await store.get_moderation("mute", room, user) == forever
    await store.set_moderation(mute)
    assert await store.get_moderation("mute", room, user) == mute
    ban = Moderation("ban", "", user, None, "fraud")
    await store.set_moderation(ban)
    assert await store.get_moderation("ban", "", user) == ban
    assert await store.get_moderation("ban", room, user) is None
    await store.clear_moderation("mute", room, user)
    assert await store.get_moderation("mute", room, user) is None
    await store.clear_moderation("mute", room, user)  # lifting twice is harmless
    assert await store.get_moderation("ban", "", user) == ban
    await store.clear_moderation("ban", "", user)
    assert await store.get_moderation("ban", "", user) is None


async def test_list_rooms_and_get_room(store: MessageStore, room: str) -> None:
    names = [f"{room}-{suffix}" for suffix in ("c", "a", "b")]
    posted: dict[str, list[Message]] = {}
    for i, name in enumerate(names):
        posted[name] = [msg(name, NOW_MS - 1000 + 10 * i + j) for j in range(2)]
        for m in posted[name]:
            await store.append(m)
    listed = [r for r in await store.list_rooms(after=room, limit=1000) if r.name.startswith(room)]
    assert [r.name for r in listed] == sorted(names)
    for info in listed:
        assert info.last_message_id == posted[info.name][-1].id
        assert info.created_at_ms == posted[info.name][0].created_at_ms
    first = await store.list_rooms(after=room, limit=1)
    assert [r.name for r in first] == [f"{room}-a"]
    rest = await store.list_rooms(after=first[0].name, limit=2)
    assert [r.name for r in rest] == [f"{room}-b", f"{room}-c"]
    assert await store.get_room(f"{room}-a") == listed[0]
    assert await store.get_room(f"{room}-never") is None


async def test_migrate_twice_is_harmless(spec: StoreSpec, store: MessageStore, room: str) -> None:
    m = msg(room, NOW_MS)
    await store.append(m)
    await store.migrate()
    await store.migrate()
    fresh = spec.make()
    await fresh.open()
    try:
        await fresh.migrate()
        assert await fresh.get(room, m.id) == m
        await fresh.ping()
    finally:
        await fresh.aclose()
    assert await store.get(room, m.id) == m


@pytest.mark.integration
async def test_concurrent_writers_from_two_server_processes(
    spec: StoreSpec, server_factory: ServerFactory, tmp_path: Path, room: str
) -> None:
    env = {
        **spec.env,
        "CHATSVC_RATE_LIMIT_PER_SECOND": "1000",
        "CHATSVC_RATE_LIMIT_BURST": "1000",
        "CHATSVC_GRPC_ENABLED": "false",
    }
    shared = tmp_path / "shared-data"  # the sqlite case: both servers on one file
    servers = [server_factory(name=f"writer{i}", data_dir=shared, **env) for i in range(2)]
    per_server = 15
    async with ClientPool() as pool:
        clients = [await pool.connect(s.url, token(f"writer{i}")) for i, s in enumerate(servers)]
        for c in clients:
            await c.ok("join", {"room": room})

        async def send(i: int, n: int) -> dict[str, object]:
            payload = {"room": room, "text": f"w{i} m{n}", "client_msg_id": f"w{i}-{n}"}
            ack: dict[str, object] = await clients[i].ok("message", payload)
            return ack

        acks = await asyncio.gather(*(send(i, n) for n in range(per_server) for i in range(2)))
        # The same user retrying through the other server is recognised there too.
        retry_client = await pool.connect(servers[1].url, token("writer0"))
        await retry_client.ok("join", {"room": room})
        retry = await retry_client.ok("message", {"room": room, "text": "w0 m3", "client_msg_id": "w0-3"})
    assert retry["duplicate"] is True
    original = next(a for a in acks if a["message"]["client_msg_id"] == "w0-3")  # type: ignore[index]
    assert retry["message"] == original["message"]
    acked = {a["message"]["id"]: a["message"]["text"] for a in acks}  # type: ignore[index]
    assert len(acked) == 2 * per_server
    reader = spec.make()
    await reader.open()
    try:
        ids = await all_pages(reader, room, 7)
        stored = {i: (await reader.get(room, i)) for i in ids}
    finally:
        await reader.aclose()
    assert len(ids) == len(set(ids)) == 2 * per_server
    assert {i: m.text for i, m in stored.items() if m is not None} == acked
