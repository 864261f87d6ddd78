"""ChatService on a real SQLite store with a recording emitter (no sockets)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat.service import ChatService, Draft
from chatsvc.chat.wire import message_wire
from chatsvc.errors import BusUnavailable, Forbidden, InvalidMessageId, InvalidPayload, NotFound
from chatsvc.metrics import Metrics
from chatsvc.settings import Limits
from chatsvc.store.sqlite import SqliteStore

ALICE = Identity("alice", "Alice")
BOB = Identity("bob", "Bob")
ADMIN = Identity("root", "Root", roles=frozenset({"admin"}))


class Recorder:
    """Stands in for socketio.AsyncServer.emit."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, str | None, Any]] = []
        self.fail: Exception | None = None

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        room: str | None = None,
        skip_sid: str | list[str] | None = None,
        namespace: str | None = None,
        callback: Any = None,
        ignore_queue: bool = False,
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.append((event, data, room, skip_sid))

    def names(self) -> list[str]:
        return [e[0] for e in self.events]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def service(store: SqliteStore, recorder: Recorder, metrics: Metrics) -> ChatService:
    return ChatService(store, recorder, metrics, Limits(catchup_max=3, unread_cap=5, catchup_overlap_ms=0))


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


async def test_post_stores_then_delivers(service: ChatService, recorder: Recorder, metrics: Metrics) -> None:
    message, created = await service.post(Draft("r", ALICE, "hello", "c1"), skip_sid="sid-a")
    assert created
    epoch = await service.epoch()
    assert message.pos == 1
    assert recorder.events == [("message", message_wire(message, epoch), "r", "sid-a")]
    assert (await service.history("r", None, 10)).messages == [message]
    wire = message_wire(message, epoch)
    assert set(wire) == {"id", "room", "user", "text", "client_msg_id", "created_at", "pos"}
    assert wire["pos"] == f"{epoch}:1" and service.wire(message) == wire
    assert wire["user"] == {"id": "alice", "name": "Alice"}
    assert wire["created_at"].endswith("Z")
    assert sample(metrics, "chatsvc_messages_in_total") == 1
    assert sample(metrics, "chatsvc_messages_out_total") == 1
    assert sample(metrics, "chatsvc_store_latency_seconds_count", op="append") == 1


async def test_retry_with_the_same_client_msg_id(service: ChatService, recorder: Recorder) -> None:
    first, _ = await service.post(Draft("r", ALICE, "hello", "c1"))
    again, created = await service.post(Draft("r", ALICE, "hello (retry)", "c1"))
    assert not created
    assert again == first
    assert recorder.names() == ["message"]
    # The key is per user: bob may use the same client_msg_id.
    _, bob_created = await service.post(Draft("r", BOB, "hi", "c1"))
    assert bob_created
    assert len((await service.history("r", None, 10)).messages) == 2


async def test_delivery_failure_is_not_the_senders_problem(
    service: ChatService, recorder: Recorder, metrics: Metrics
) -> None:
    recorder.fail = BusUnavailable()
    _, created = await service.post(Draft("r", ALICE, "stored anyway"))
    assert created
    recorder.fail = RuntimeError("boom")
    await service.post(Draft("r", ALICE, "and this"))
    assert [m.text for m in (await service.history("r", None, 10)).messages] == ["and this", "stored anyway"]
    assert sample(metrics, "chatsvc_bus_errors_total", op="emit") == 2


async def test_typing_is_relayed_never_stored_and_a_bus_failure_is_counted_not_raised(
    service: ChatService, recorder: Recorder, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    await service.typing("r", ALICE, True, skip_sid="sid-a")
    assert recorder.events == [
        ("typing", {"room": "r", "user": ALICE.public(), "typing": True}, "r", "sid-a")
    ]
    assert (await service.history("r", None, 10)).messages == []
    recorder.fail = BusUnavailable("Kafka unavailable: test")
    with caplog.at_level("INFO", logger="chatsvc.chat.service"):
        for _ in range(3):
            await service.typing("r", ALICE, False, skip_sid="sid-a")  # no BusUnavailable
    assert sample(metrics, "chatsvc_bus_errors_total", op="emit") == 3
    # Volatile: an outage does not log a warning per keystroke.
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


async def test_edit_permissions(service: ChatService, recorder: Recorder) -> None:
    message, _ = await service.post(Draft("r", ALICE, "original"))
    edited = await service.edit("r", message.id, "by author", ALICE)
    assert edited.text == "by author" and edited.edited_at_ms is not None
    assert "edited_at" in message_wire(edited)
    with pytest.raises(Forbidden):
        await service.edit("r", message.id, "by bob", BOB)
    assert (await service.edit("r", message.id, "by admin", ADMIN)).text == "by admin"
    with pytest.raises(NotFound):
        await service.edit("r", "0" * 26, "nothing", ALICE)
    with pytest.raises(NotFound):
        await service.edit("other-room", message.id, "wrong room", ALICE)
    assert recorder.names() == ["message", "message_edited", "message_edited"]
    edits = [payload for name, payload, *_ in recorder.events if name == "message_edited"]
    logged = await service.store.events_after("r", message.id, 10)
    # Delivered at the event's own position (the message keeps its own: 1); stored without.
    epoch = await service.epoch()
    assert [p.pop("pos") for p in edits] == [f"{epoch}:2", f"{epoch}:3"]
    assert [(e.kind, e.id, e.payload, e.pos) for e in logged] == [
        ("edited", p["event_id"], p, n) for p, n in zip(edits, (2, 3), strict=True)
    ]
    assert [p["text"] for p in edits] == ["by author", "by admin"]


async def test_delete_permissions(service: ChatService, recorder: Recorder) -> None:
    a, _ = await service.post(Draft("r", ALICE, "a"))
    b, _ = await service.post(Draft("r", ALICE, "b"))
    with pytest.raises(Forbidden):
        await service.delete("r", a.id, BOB)
    deleted = await service.delete("r", a.id, ALICE)
    assert deleted.deleted and deleted.text == ""
    name, payload, room, skip = recorder.events[-1]
    event_id = payload.pop("event_id")
    assert payload.pop("pos") == f"{await service.epoch()}:3"
    assert (name, payload, room, skip) == (
        "message_deleted",
        {"id": a.id, "room": "r", "deleted_by": "alice"},
        "r",
        None,
    )
    # The event is in the room's event log under the id it was delivered with.
    [logged] = await service.store.events_after("r", a.id, 10)
    assert (logged.id, logged.kind, logged.message_id) == (event_id, "deleted", a.id)
    assert logged.payload == {**payload, "event_id": event_id}
    with pytest.raises(NotFound):
        await service.delete("r", a.id, ALICE)  # already gone
    with pytest.raises(NotFound):
        await service.edit("r", a.id, "resurrect", ALICE)
    await service.delete("r", b.id, ADMIN)
    await service.post(Draft("r", ALICE, "c"))
    c = (await service.history("r", None, 1)).messages[0]
    await service.delete("r", c.id, None)  # the admin API
    assert recorder.events[-1][1]["deleted_by"] == "admin"


async def test_read_markers_and_unread(service: ChatService, recorder: Recorder) -> None:
    posted = [(await service.post(Draft("r", BOB, f"b{i}")))[0] for i in range(8)]
    await service.post(Draft("r", ALICE, "own messages never count"))
    assert await service.unread("r", ALICE) == 5  # capped at unread_cap
    await service.mark_read("r", ALICE, posted[5].id, skip_sid="sid-a")
    assert recorder.events[-1] == (
        "read",
        {"room": "r", "user": {"id": "alice", "name": "Alice"}, "message_id": posted[5].id},
        "r",
        "sid-a",
    )
    assert await service.unread("r", ALICE) == 2
    await service.mark_read("r", ALICE, posted[1].id, skip_sid=None)  # never moves back
    assert await service.unread("r", ALICE) == 2
    assert await service.unread("r", BOB) == 1


async def test_store_check(service: ChatService, store: SqliteStore) -> None:
    await service.check_store()
    await store.aclose()
    with pytest.raises(Exception, match="not open"):
        await service.check_store()


async def test_a_store_level_bad_id_reaches_the_caller_as_invalid_payload_naming_the_field(
    service: ChatService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores raise their own InvalidMessageId (code ``internal``); for an id a client sent,
    the service answers with the protocol's invalid_payload naming the field instead."""

    async def bad_id(*args: Any, **kwargs: Any) -> Any:
        raise InvalidMessageId("not a message id")

    for method in ("history", "after", "get", "mark_read"):
        monkeypatch.setattr(store, method, bad_id)
    with pytest.raises(InvalidPayload, match="'before' must be a message id"):
        await service.history("r", "nope", 10)
    with pytest.raises(InvalidPayload, match="'since' must be a message id"):
        await service.catch_up("r", "nope")
    with pytest.raises(InvalidPayload, match="'id' must be a message id"):
        await service.edit("r", "nope", "text", ALICE)
    with pytest.raises(InvalidPayload, match="'id' must be a message id"):
        await service.delete("r", "nope", ALICE)
    with pytest.raises(InvalidPayload, match="'message_id' must be a message id"):
        await service.mark_read("r", ALICE, "nope", skip_sid=None)
    assert InvalidMessageId.code == "internal", "untranslated, it would be a bug, not the client's"
