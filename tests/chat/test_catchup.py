"""chatsvc.chat.catchup through ChatService on a real SQLite store: history pages and
``join {since}`` catch-up by id, with the overlap window before ``since``."""

from __future__ import annotations

import time

from chatsvc.chat.service import ChatService, Draft
from chatsvc.metrics import Metrics
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.settings import Limits
from chatsvc.store.sqlite import SqliteStore
from tests.chat.test_service import ALICE, Recorder, metrics, recorder, service

__all__ = ["metrics", "recorder", "service"]  # the fixtures this module shares


async def test_history_pages_and_catch_up(service: ChatService) -> None:
    posted = [(await service.post(Draft("r", ALICE, f"m{i}")))[0] for i in range(7)]
    page = await service.history("r", None, 3)
    assert [m.text for m in page.messages] == ["m6", "m5", "m4"]
    page2 = await service.history("r", page.next_before, 3)
    assert [m.text for m in page2.messages] == ["m3", "m2", "m1"]
    last = await service.history("r", page2.next_before, 3)
    assert [m.text for m in last.messages] == ["m0"]
    assert last.next_before is None

    missed, more = await service.catch_up("r", posted[1].id)
    assert [m.text for m in missed] == ["m2", "m3", "m4"]  # catchup_max=3, oldest first
    assert more
    missed, more = await service.catch_up("r", posted[4].id)
    assert [m.text for m in missed] == ["m5", "m6"]
    assert not more


def other_replicas(room: str, text: str, ms_ago: int) -> Message:
    """A message another replica minted ``ms_ago`` and stored just now (arrived late)."""
    now = int(time.time() * 1000)
    return Message(id_at(now - ms_ago), room, "carol", "Carol", text, now - ms_ago)


async def test_catch_up_replays_the_overlap_window_before_since(
    store: SqliteStore, recorder: Recorder, metrics: Metrics
) -> None:
    service = ChatService(store, recorder, metrics, Limits(catchup_max=2, catchup_overlap_ms=2000))
    await store.append(other_replicas("r", "long ago", 60_000))
    seen, _ = await service.post(Draft("r", ALICE, "the newest the client saw"))
    late, _ = await store.append(other_replicas("r", "in flight on the bus", 300))
    after = [(await service.post(Draft("r", ALICE, f"m{i}")))[0] for i in range(3)]

    missed, more = await service.catch_up("r", seen.id)
    # The late one comes first (older id), then what is after since, paged by catchup_max.
    assert [m.text for m in missed] == ["in flight on the bus", "m0", "m1"]
    assert more
    # Paging on the last id progresses even though the overlap repeats.
    rest, more = await service.catch_up("r", after[1].id)
    assert [m.text for m in rest if m.id > after[1].id] == ["m2"]
    assert not more
    assert late.id < seen.id


async def test_a_busy_overlap_window_keeps_its_newest_messages(
    store: SqliteStore, recorder: Recorder, metrics: Metrics
) -> None:
    limits = Limits(catchup_max=10, catchup_overlap_ms=5000, history_page_max=3)
    service = ChatService(store, recorder, metrics, limits)
    for i in range(6):
        await store.append(other_replicas("r", f"w{i}", 4000 - i * 100))
    seen, _ = await service.post(Draft("r", ALICE, "seen"))
    missed, more = await service.catch_up("r", seen.id)
    assert [m.text for m in missed] == ["w3", "w4", "w5"]
    assert not more
