"""An in-memory stand-in for the Kafka events topic (:class:`Topic`, each replica's
:class:`MemoryLog` on it) and two replicas' ChatServices on it over one store: the cluster
mode of the chat tests without a broker (tests/chat/test_streams.py, test_changes.py,
test_threads_cluster.py; the real broker: tests/bus/test_kafka_streams.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from chatsvc.bus.log import LogRecord, RecordHandler
from chatsvc.chat.service import Audience, ChatService
from chatsvc.errors import BusUnavailable, StoreUnavailable
from chatsvc.metrics import Metrics
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore
from tests.chat.test_service import Recorder

R = TypeVar("R")


class Topic:
    """One partition every replica reads: offsets shared by all rooms, like Kafka's."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.readers: list[MemoryLog] = []
        #: The history writers' group: the first replica's writer has the only partition.
        self.writer: RecordHandler | None = None
        self.unwritten: asyncio.Queue[LogRecord] = asyncio.Queue()
        self.refuse = False
        #: The broker takes the record but the producer's ack is lost (a timed-out produce).
        self.lose_acks = False
        #: The history writer holds off (tests/chat/test_changes.py); ``written`` counts.
        self.writing = asyncio.Event()
        self.writing.set()
        self.written = 0

    def append(self, room: str, body: dict[str, Any]) -> int:
        if self.refuse:
            raise BusUnavailable("Kafka unavailable: connection refused")
        self.records.append((room, body))
        offset = len(self.records) + 99  # not starting at 1: offsets are opaque
        for reader in self.readers:
            reader.pending.put_nowait(LogRecord(room, offset, body))
        self.unwritten.put_nowait(LogRecord(room, offset, body))
        if self.lose_acks:
            raise BusUnavailable("Kafka did not acknowledge the event within 3s")
        return offset


class MemoryLog:
    """A replica's view of :class:`Topic` (a :class:`~chatsvc.bus.log.RoomLog`)."""

    partitions = 1

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.pending: asyncio.Queue[LogRecord] = asyncio.Queue()
        self.handler: RecordHandler | None = None
        self.task: asyncio.Task[None] | None = None
        topic.readers.append(self)

    def on_record(self, handler: RecordHandler) -> None:
        self.handler = handler

    def on_release(self, handler: Any) -> None:
        """Every replica reads the one partition: nothing is ever released."""

    async def follow(self, room: str) -> None:
        """Every replica reads the one partition already."""

    def on_history(self, writer: RecordHandler, *, settled: object = None) -> None:
        if self.topic.writer is None:
            self.topic.writer = writer
            self.writes = True

    writes = False
    writer_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._read())
        if self.writes:
            self.writer_task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """In order; a failed write is retried until it succeeds, nothing after it first."""
        while True:
            record = await self.topic.unwritten.get()
            assert self.topic.writer is not None
            await self.topic.writing.wait()
            while True:
                try:
                    await self.topic.writer(record)
                    self.topic.written += 1
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.01)

    async def _read(self) -> None:
        while True:
            record = await self.pending.get()
            assert self.handler is not None
            await self.handler(record)

    async def check(self) -> None:
        if self.topic.refuse:
            raise BusUnavailable("down")

    async def aclose(self) -> None:
        for task in (self.task, self.writer_task):
            if task is not None:
                task.cancel()

    async def append(self, room: str, body: dict[str, Any]) -> int:
        await asyncio.sleep(0)
        return self.topic.append(room, body)


def delivered(emitter: Recorder, event: str = "message") -> list[dict[str, Any]]:
    return [data for name, data, _, _ in emitter.events if name == event]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@asynccontextmanager
async def two_replicas(
    store: MessageStore,
    wrap: Callable[[ChatService, Recorder], R],
    *,
    audiences: tuple[Audience | None, Audience | None] = (None, None),
    presents: tuple[Callable[[str], bool] | None, Callable[[str], bool] | None] = (None, None),
) -> AsyncIterator[tuple[Topic, R, R]]:
    """Replicas ``r1`` and ``r2``: each a ChatService in cluster mode on its own
    :class:`MemoryLog` of one :class:`Topic` and its own recording emitter (and its own
    private-room ``audiences`` and ``presents``: whether a socket there is in a room),
    streams started, made into what a test drives by ``wrap``; streams closed after."""
    topic = Topic()
    services: list[ChatService] = []
    made: list[R] = []
    try:
        for name, audience, present in zip(("r1", "r2"), audiences, presents, strict=True):
            emitter = Recorder()
            log = MemoryLog(topic)
            service = ChatService(
                store,
                emitter,
                Metrics(),
                Limits(),
                audience=audience,
                room_log=log,
                host=name,
                present=present,
            )
            services.append(service)
            await service.start_streams()
            made.append(wrap(service, emitter))
        yield topic, made[0], made[1]
    finally:
        for service in services:
            await service.aclose_streams()


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 5.0) -> None:
    """Until ``check`` holds (bounded), then let the loop settle."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    await settle()


async def all_written(topic: Topic, extra: int = 0) -> None:
    """Until the history writer has written every record (and ``extra`` redeliveries)."""

    async def done() -> bool:
        return topic.written == len(topic.records) + extra

    await until(done, f"the writer ({topic.written} of {len(topic.records) + extra})")
