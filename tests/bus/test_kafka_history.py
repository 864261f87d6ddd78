"""The events topic's history writer on the real broker (issue 21 phase 2 item 4): a
consumer group writes every record once, in partition order, pauses through a store outage
(logged once) without skipping anything, and a writer that restarts resumes after the last
record written. In-process: the store is a recording double that can fail like CQL."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from chatsvc.bus.kafka_log import KafkaRoomLog, history_group
from chatsvc.bus.log import LogRecord
from chatsvc.errors import StoreUnavailable
from tests.bus.helpers import new_topic

pytestmark = pytest.mark.integration


class History:
    """Records what was written, per room in order; ``down`` makes writes fail."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[int]] = defaultdict(list)
        self.down = False
        self.refused = 0
        self.changed = asyncio.Event()

    async def write(self, record: LogRecord) -> None:
        if self.down:
            self.refused += 1
            self.changed.set()
            raise StoreUnavailable("no ScyllaDB node reachable (ConnectionRefusedError)")
        self.rooms[record.room].append(record.body["n"])
        self.changed.set()

    async def until(self, total: int, within: float = 30.0) -> None:
        await self.wait(lambda: sum(map(len, self.rooms.values())) >= total, within)

    async def wait(self, done: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()


def room_log(kafka: dict[str, str], topic: str, history: History) -> KafkaRoomLog:
    options = {"bootstrap_servers": [kafka["KAFKA_TEST_PLAINTEXT"]], "request_timeout_ms": 5000}
    log = KafkaRoomLog(topic, lambda: dict(options), backoff_seconds=0.1)

    async def ignore(_: LogRecord) -> None:
        return None

    log.on_record(ignore)
    log.on_history(history.write)
    return log


async def test_history_is_written_once_in_order_through_an_outage_and_resumes_after_a_restart(
    kafka: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatsvc.bus.kafka_log")
    topic = new_topic()
    assert history_group(topic) == f"{topic}.history" and history_group("chatsvc.events") == "chatsvc.history"
    rooms = [f"room-{i}" for i in range(4)]
    history = History()
    first = room_log(kafka, topic, history)
    await first.start()
    try:
        for n in range(12):
            await first.append(rooms[n % 4], {"n": n})
        await history.until(12)
        history.down = True  # the store goes away mid-stream
        for n in range(12, 24):
            await first.append(rooms[n % 4], {"n": n})
        await history.wait(lambda: history.refused >= 3, within=10)  # retried, not skipped
        assert sum(map(len, history.rooms.values())) == 12, "nothing written while the store is down"
        history.down = False
        await history.until(24)
    finally:
        await first.aclose()
    for i, room in enumerate(rooms):
        assert history.rooms[room] == list(range(i, 24, 4)), "each record once, in stream order"
    paused = [r for r in caplog.records if "history writer paused" in r.getMessage()]
    resumed = [r for r in caplog.records if "history writer resumed" in r.getMessage()]
    assert len(paused) == 1 and len(resumed) == 1, [r.getMessage() for r in caplog.records]

    # Another writer of the group (a replica restarted, or the partitions moved): it resumes
    # after the last record written and writes only what came after.
    after = History()
    second = room_log(kafka, topic, after)
    await second.start()
    try:
        for n in range(24, 28):
            await second.append(rooms[n % 4], {"n": n})
        await after.until(4)
        await asyncio.sleep(1.0)  # a re-write of older records would have come by now
    finally:
        await second.aclose()
    assert {room: ns for room, ns in after.rooms.items()} == {room: [24 + i] for i, room in enumerate(rooms)}


async def test_every_replica_reads_every_record_and_replays_the_recent_ones_at_startup(
    kafka: dict[str, str],
) -> None:
    topic = new_topic()
    seen: list[tuple[str, Any, bool]] = []

    async def read(record: LogRecord) -> None:
        seen.append((record.room, record.body["n"], record.replay))

    options = {"bootstrap_servers": [kafka["KAFKA_TEST_PLAINTEXT"]], "request_timeout_ms": 5000}
    writer = KafkaRoomLog(topic, lambda: dict(options))
    writer.on_record(read)
    await writer.start()
    try:
        offsets = [await writer.append("r", {"n": n}) for n in range(3)]
        assert offsets == sorted(offsets) and len(set(offsets)) == 3
    finally:
        await writer.aclose()
    later: list[tuple[str, Any, bool]] = []
    four = asyncio.Event()

    async def read_later(record: LogRecord) -> None:
        later.append((record.room, record.body["n"], record.replay))
        if len(later) >= 4:
            four.set()

    reader = KafkaRoomLog(topic, lambda: dict(options))
    reader.on_record(read_later)
    await reader.start()
    try:
        await reader.append("r", {"n": 3})
        async with asyncio.timeout(15):
            await four.wait()
    finally:
        await reader.aclose()
    assert later == [("r", 0, True), ("r", 1, True), ("r", 2, True), ("r", 3, False)]
