"""The relay of offline notifications from the store's outbox to the Kafka topic
(issue 24, ``CHATSVC_NOTIFY_TOPIC``): every notification exactly once on the topic, none
lost to a broker outage of any length or to a crash, and none produced twice by several
replicas or a restart.

The outbox (:class:`~chatsvc.store.base.NotificationOutbox`) is the source of truth in both
modes: a sender's ``message`` writes its notifications there and is acknowledged; this
loop, in the background, produces them to the topic in position order. Its state
(:class:`~chatsvc.store.base.NotificationRelayState`, shared by every replica of the store)
is a lease and the position relayed so far:

* **one relay at a time.** Each round first renews the lease (a conditional write in the
  store); a replica without it only waits. A dead replica's lease lapses after
  ``lease_seconds`` and another takes over. The lease is renewed again right before each
  produce, and a produce is bounded by the producer's retry window plus a margin, which the
  settings keep below the lease: a relay that lost its lease cannot still be producing.
* **nothing lost.** The position moves only after the broker acknowledged every record up
  to it (``acks=all``), and only while the lease is held (fenced in the store). A failed
  produce (an outage of any length, a crash) leaves the position: the batch is tried again,
  by this replica after a capped backoff or by the next owner.
* **nothing twice.** A record whose produce failed may still be in the log, and a new owner
  (or this one after a restart) cannot know what its predecessor produced after its last
  recorded position. So whenever the relay is not sure (on taking the lease, after any
  failure), it first reads the dedup keys of the topic's newest records (a bounded scan:
  ``scan_records`` per partition, far more than the one batch that can be unrecorded) and
  leaves out what is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from chatsvc.errors import ChatError
from chatsvc.model.rooms import Notification
from chatsvc.store.base import NotificationOutbox, NotificationRelayState

log = logging.getLogger(__name__)

#: Notifications per produce (and per record of the position).
BATCH = 100
#: Records per partition a relay that is not sure reads back (many times one batch).
SCAN_RECORDS = 1_000
#: Longest wait between rounds when there is nothing to relay (seconds).
POLL_SECONDS = 1.0
#: First and longest wait after a failure (seconds).
BACKOFF_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 5.0
#: Longest a stopping relay spends giving its lease up (seconds).
RELEASE_TIMEOUT_SECONDS = 3.0


class NotificationTopic(Protocol):
    """Where the relay produces (chatsvc.bus.notify_kafka.KafkaNotifications)."""

    topic: str

    async def start(self) -> None:
        """Connect; ``StartupError`` if it cannot."""

    async def aclose(self) -> None:
        """Disconnect."""

    async def produce(self, notifications: Sequence[Notification]) -> None:
        """Produce and wait for every acknowledgement; ``ChatError`` if one is missing."""

    async def recent_ids(self, per_partition: int) -> set[str]:
        """Dedup keys of the topic's newest records; ``ChatError`` if it cannot tell."""


@runtime_checkable
class RelayOutbox(NotificationOutbox, NotificationRelayState, Protocol):
    """A store with an outbox and the relay's state (every store of chatsvc)."""


class NotificationRelay:
    """Relays the outbox to a topic while this replica holds the lease."""

    def __init__(
        self,
        store: RelayOutbox,
        topic: NotificationTopic,
        *,
        owner: str,
        lease_seconds: int,
        batch: int = BATCH,
        scan_records: int = SCAN_RECORDS,
    ) -> None:
        """``owner``: unique per process (a restarted replica is a new owner)."""
        self._store = store
        self._topic = topic
        self.scope = topic.topic
        self.owner = owner
        self._lease = lease_seconds
        self._batch = batch
        self._scan = scan_records
        self._poll = min(POLL_SECONDS, lease_seconds / 3)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The position relayed so far, known while the lease is held.
        self._position: int | None = None
        #: Whether the topic holds nothing of ours after ``_position`` (else scan first).
        self._sure = False
        self._cause: str | None = None
        #: Records produced by this process (a duplicate-free count: skipped ones excluded).
        self.produced = 0
        #: Records a scan found already on the topic, so not produced again.
        self.skipped = 0

    async def start(self) -> None:
        """Create the relay's record (a new topic starts at the outbox's end), connect the
        producer, start the loop."""
        await self._store.start_relay(self.scope)
        await self._topic.start()
        self._task = asyncio.create_task(self._run(), name="notification-relay")

    def wake(self) -> None:
        """Something was written to the outbox: look now rather than at the next poll."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the loop, give the lease up (the next replica need not wait it out), close
        the producer; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(ChatError, TimeoutError):
                async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS):
                    await self._store.release_relay(self.scope, self.owner)
        await self._topic.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                busy = await self.step()
            except ChatError as exc:
                failures += 1
                self._failed(exc)
                await asyncio.sleep(min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** min(failures - 1, 10)))
                continue
            failures = 0
            if self._cause is not None:
                log.info("notification relay to %s: working again", self.scope)
                self._cause = None
            if busy:
                continue
            if self._position is None:
                # Another replica relays: try for the lease now and then, deaf to wakes (every
                # replica trying at every write would be a lightweight transaction per write).
                await asyncio.sleep(self._lease / 3)
                continue
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the event is set (the loop would never stop).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            self._wake.clear()

    def _failed(self, exc: ChatError) -> None:
        # Once per cause (the error's code: a broker outage fails the produce, then the
        # producer's start, then the read-back, with different messages), not per attempt.
        if exc.code != self._cause:
            log.warning(
                "notification relay to %s failed (%s: %s); retrying with backoff", self.scope, exc.code, exc
            )
            self._cause = exc.code

    async def step(self) -> bool:
        """One round: renew the lease, produce the next batch, record it; True if it
        relayed something (so the next round comes at once). ``ChatError`` from the store
        or the topic leaves the position where it was."""
        if not await self._hold():
            return False
        assert self._position is not None
        batch = await self._store.notifications_after(self._position, self._batch)
        if not batch:
            return False
        todo = [n for _, n in batch]
        if not self._sure:
            there = await self._topic.recent_ids(self._scan)
            todo = [n for n in todo if n.dedup_id not in there]
            # The scan took time: produce only under the same lease, renewed now.
            if await self._store.take_relay(self.scope, self.owner, self._lease) != "renewed":
                self._forget()
                return False
        # From here until the position is recorded, the topic may hold records after it (a
        # produce that failed after some landed, or a record that failed after the produce).
        self._sure = False
        if todo:
            await self._topic.produce(todo)
        self.produced += len(todo)
        self.skipped += len(batch) - len(todo)
        last = batch[-1][0]
        if not await self._store.record_relayed(self.scope, self.owner, last):
            log.warning("notification relay to %s: the lease lapsed while producing", self.scope)
            self._forget()
            return False
        self._position = last
        self._sure = True
        return True

    async def _hold(self) -> bool:
        got = await self._store.take_relay(self.scope, self.owner, self._lease)
        if got is None:
            if self._position is not None:
                log.info("notification relay to %s: another replica relays now", self.scope)
            self._forget()
            return False
        if got == "taken" or self._position is None:
            # Someone else may have relayed since we last held it: its position, and a scan.
            if self._position is None:
                log.info("notification relay to %s: this replica relays now", self.scope)
            self._forget()
            self._position = await self._store.relay_position(self.scope)
        return True

    def _forget(self) -> None:
        self._position = None
        self._sure = False
