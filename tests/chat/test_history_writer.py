"""The history writer's store side (cluster mode) with offline notifications (issue 24): a
message record's notifications are written with its row, once per (user, message) however
often the record is written (a writer that died before committing, its successor after a
restart), and a notification store failure has the record retried."""

from __future__ import annotations

import pytest

from chatsvc.bus.log import LogRecord
from chatsvc.chat.changes import reaction_change
from chatsvc.chat.conversations import user_room
from chatsvc.chat.history_writer import HistoryWriter
from chatsvc.chat.notify import Notifier
from chatsvc.chat.streams import event_body, message_body
from chatsvc.errors import StoreUnavailable
from chatsvc.metrics import Metrics
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message, RoomEvent
from chatsvc.model.rooms import Conversation, Member
from chatsvc.settings import Limits
from chatsvc.store.memory import MemoryStore
from tests.chat.outbox_double import FlakyOutbox

DM = "dm:0123456789abcdef"


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    members = [Member(DM, u, "member", 1) for u in ("alice", "bob")]
    await store.create_conversation(Conversation(DM, "direct", "", "alice", 1), members)
    return store


def record(offset: int, text: str = "hello", *, client_msg_id: str | None = None) -> LogRecord:
    ms = 1_700_000_000_000 + offset
    sent = Message(id_at(ms), DM, "alice", "Alice", text, ms, client_msg_id=client_msg_id)
    return LogRecord(DM, offset, message_body(sent, skip_sid=None, host="ra"))


def writer(store: MemoryStore, outbox: MemoryStore | None = None) -> HistoryWriter:
    """A replica's writer with its notifier (a new one per "process")."""
    notifier = Notifier(store, Limits(), outbox=outbox or store)
    notifier.from_log = True
    history = HistoryWriter(store, Metrics())
    history.on_message = notifier.written
    return history


async def outbox(store: MemoryStore) -> list[tuple[str, str]]:
    return [(n.user_id, n.message_id) for _, n in await store.notifications_after(0, 100)]


async def test_a_message_record_notifies_once_also_when_written_again_after_a_restart(
    store: MemoryStore,
) -> None:
    first = record(1, client_msg_id="c-1")
    await writer(store).write(first)
    sent = first.body["id"]
    assert await outbox(store) == [("bob", sent)]
    # The writer died before committing: its successor (a new process) writes it again.
    await writer(store).write(first)
    # A late duplicate of the same send (a second record, same client_msg_id): the original.
    await writer(store).write(record(2, client_msg_id="c-1"))
    assert await outbox(store) == [("bob", sent)]
    page = await store.history(DM, before=None, limit=10)
    assert [m.id for m in page.messages] == [sent]


async def test_a_member_online_at_the_first_run_is_not_notified_by_a_re_run(store: MemoryStore) -> None:
    """bob was online when the record was first written (no notification); the replica
    holding his socket stops, and the partition's next writer runs the record again (the
    writer commits only settled batches): the re-run does not judge "offline" again."""
    online = {"bob"}
    first = record(1)
    history = writer(store)
    notifier_of(history).online = online.__contains__
    await history.write(first)
    assert await outbox(store) == []
    online.clear()  # bob's replica stopped
    await writer(store).write(first)  # the next writer, from the last commit
    assert await outbox(store) == []
    later = record(2, "now you are not")
    await writer(store).write(later)
    assert await outbox(store) == [("bob", later.body["id"])]


def notifier_of(history: HistoryWriter) -> Notifier:
    """The notifier whose ``written`` is the writer's hook."""
    hook = history.on_message
    notifier = getattr(hook, "__self__", None)
    assert isinstance(notifier, Notifier)
    return notifier


async def test_a_record_whose_notifications_were_cut_off_gets_them_from_the_next_writer(
    store: MemoryStore,
) -> None:
    """The row was written, then the writer died before the notifications (no commit)."""
    first = record(1)
    await HistoryWriter(store, Metrics()).write(first)  # a writer that stopped after the row
    assert await outbox(store) == []
    await writer(store).write(first)  # the partition's next writer, from the last commit
    assert await outbox(store) == [("bob", first.body["id"])]


async def test_a_notification_store_failure_has_the_record_retried(store: MemoryStore) -> None:
    down = [True]
    history = writer(store, outbox=FlakyOutbox(store, lambda _n: down[0]))
    first = record(1)
    with pytest.raises(StoreUnavailable):  # chatsvc.bus's writer retries it (capped backoff)
        await history.write(first)
    assert not await store.notifications_done(DM, first.body["id"])  # not marked: unfinished
    down[0] = False
    await history.write(first)
    assert await outbox(store) == [("bob", first.body["id"])]
    assert await store.notifications_done(DM, first.body["id"])


async def test_a_private_record_names_its_members_so_the_writer_reads_none(store: MemoryStore) -> None:
    """The sender resolved the room's audience into the record (``to``: the room and each
    member's user room); the writer notifies those members without a members read."""

    class NoReads(MemoryStore):
        async def list_members(self, room: str, *, after: str | None, limit: int) -> list[Member]:
            raise AssertionError("members read by the history writer")

    notifier = Notifier(NoReads(), Limits(), outbox=store)
    history = HistoryWriter(store, Metrics())
    history.on_message = notifier.written
    sent = record(1)
    to = [DM, *(user_room(u) for u in ("alice", "bob", "carol"))]
    addressed = LogRecord(DM, 1, {**sent.body, "to": to})
    await history.write(addressed)
    assert sorted(await outbox(store)) == [("bob", sent.body["id"]), ("carol", sent.body["id"])]


def reaction(offset: int, message_id: str, *, add: bool = True) -> LogRecord:
    event = RoomEvent(id_at(1_700_000_000_000 + offset), DM, "reaction", message_id, {"emoji": "🔥"})
    change = reaction_change("🔥", "bob", add=add, base=0)
    return LogRecord(DM, offset, event_body(event, "reaction", change))


async def test_a_rewound_writer_writes_a_reaction_row_the_store_lost_again(store: MemoryStore) -> None:
    """After a store failure the writer rewrites from its last commit (a crashed CQL node can
    lose rows it acked, chatsvc.bus.kafka_history): a reaction record it wrote before is
    written again, not taken for a repeat by the change window; a real repeat still is one."""
    history = writer(store)
    sent = record(1)
    message_id = sent.body["id"]
    records = [sent, reaction(2, message_id), reaction(3, message_id)]  # 3: a retry that landed too
    for written in records:
        await history.write(written)
    assert await store.reaction_counts(DM, [message_id]) == {message_id: {"🔥": 1}}
    await store.delete_reaction(DM, message_id, "🔥", "bob")  # the row the crash lost
    for rewritten in records:  # from the last commit
        await history.write(rewritten)
    assert await store.reaction_counts(DM, [message_id]) == {message_id: {"🔥": 1}}
    stream = await store.stream_after(DM, 0, 10)
    assert [r.pos for r in stream.records] == [1, 2], "the repeat stays out of history"
