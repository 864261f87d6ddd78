"""Fan-out between replicas over Apache Kafka (with chatsvc.bus.kafka_client, kafka_log and
notify_kafka, the only modules that import ``aiokafka``).

:class:`AsyncKafkaManager` is a python-socketio ``AsyncPubSubManager``: every room emit,
cross-replica disconnect and room operation is published as one JSON record on one topic,
and every replica reads every partition of that topic.

Design, and why:

* **No consumer group.** Each replica must see every record, so the consumer has
  ``group_id=None`` and assigns itself all partitions; at startup it seeks to the end
  (history is the record of the past; the bus only carries what happens from now on).
  After a broker outage it resumes from the offsets it had reached.
* **Order per room.** Records are keyed by room (``to=sid`` emits and disconnects by
  sid, namespace-wide emits by namespace), so one room's records share a partition and
  arrive in the order they were published; an emit to a sid and the disconnect of that
  sid also stay in order.
* **Durable publish, bounded ack.** The producer uses ``acks="all"`` and idempotence, never
  flushes per message, and awaits the delivery future so a failure is known. The await is
  bounded (``PUBLISH_TIMEOUT_SECONDS``) and a publish while the bus is known to be down
  fails at once, so the chat ack never waits on Kafka for long. It is awaited rather than
  fire-and-forget because the message is already stored before it is published: a failed
  publish only costs live delivery (``ChatService`` logs it; clients on other replicas
  catch up with ``join {since}``), and knowing about it keeps metrics and logs honest.
* **JSON on the wire, never pickle**: a record from the topic is data, not code.
* **Skipped undecoded.** Each record carries headers (method, host, and for an emit to a room
  the namespace, :mod:`chatsvc.bus.records`); a room emit for a room with no local member and
  no session being restored into it, and this replica's own records, are skipped before their
  JSON is decoded. Records without headers (older replicas) are decoded as before.
* **Control messages.** Cluster state that is not a Socket.IO packet travels on the same
  topic as ``{"method": "control", "data": ...}`` and goes to the handlers registered with
  :meth:`AsyncKafkaManager.on_control`, never to python-socketio. Own records are dropped.
* **Failures are loud once.** Startup makes ``KAFKA_CONNECT_RETRIES`` attempts, each logged
  once with a classified reason (TLS handshake failure, certificate verify failed, unknown
  host, connection refused, timeout...), then raises :class:`StartupError`. At run time an
  outage is logged once, :meth:`check` fails (``/readyz`` 503 naming the bus) and the
  listener probes with capped exponential backoff until Kafka answers again.

The topic is auto-created by the test broker. Production pre-creates it (for example 6
partitions, replication factor 3, ``min.insync.replicas=2``; short retention is enough,
because history lives in the store): with ``acks=all`` that survives one broker loss.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError
from socketio.async_pubsub_manager import AsyncPubSubManager

from chatsvc.bus.base import ControlHandler
from chatsvc.bus.kafka_client import (
    BACKOFF_CAP_SECONDS,
    REQUEST_TIMEOUT_MS,
    ConnectFailed,
    acked_send,
    classify,
    client_options,
    diagnose,
    explain_stall,
    quiet_aiokafka,
    ssl_context,
    stop_clients,
)
from chatsvc.bus.records import AdaptiveFetch, FetchMode, RecordFilter, is_room_emit, record_headers
from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.metrics import Metrics
from chatsvc.settings import KafkaSettings
from chatsvc.transport.broadcast import DirectEmitMixin

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 3.0
"""Longest a publish (and so a chat ack) waits for Kafka before giving up on live delivery."""
POLL_MS = 1_000
HEALTH_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 3.0
CLOSE_TIMEOUT_SECONDS = 5.0

_SOCKETIO_METHODS = frozenset({"emit", "disconnect", "enter_room", "leave_room", "close_room"})


def record_key(message: dict[str, Any]) -> bytes:
    """The partition key of a bus record: its room, else its sid, else its namespace."""
    if message.get("method") == "control":
        data = message.get("data")
        room = data.get("room") if isinstance(data, dict) else None
        return str(room or "control").encode()
    for field in ("room", "sid", "namespace"):
        value = message.get(field)
        if isinstance(value, list) and value and isinstance(value[0], str):
            # A private room's emit to [room, its members' user rooms]: keyed by the room,
            # ordered with the room's other records (chatsvc.chat.conversations).
            return value[0].encode()
        if value:
            return (value if isinstance(value, str) else json.dumps(value, sort_keys=True)).encode()
    return b"/"


class AsyncKafkaManager(AsyncPubSubManager, DirectEmitMixin):  # type: ignore[misc]
    """python-socketio client manager that fans out through a Kafka topic.

    Local delivery (of this replica's emits and of those heard from the topic) takes
    :class:`~chatsvc.transport.broadcast.DirectEmitMixin`'s task-free path.

    ``write_only=True`` makes a publisher that never listens (an external process that
    emits to, or disconnects, sockets living on the replicas).
    """

    name = "chatsvc-kafka"

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        metrics: Metrics | None = None,
        replica_id: str = "",
        write_only: bool = False,
    ) -> None:
        super().__init__(channel=settings.topic, write_only=write_only)
        # Unique per process even when HOSTNAME repeats; readable in logs.
        self.host_id = f"{replica_id or 'chatsvc'}-{uuid.uuid4().hex[:12]}"
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._ssl: ssl.SSLContext | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._positions: dict[int, int] = {}
        self._partitions: list[int] = []
        self._control_handlers: list[ControlHandler] = []
        self._enter_hooks: list[Callable[[str], Awaitable[None]]] = []
        self._healthy = False
        self._down_reason = "not connected yet"
        self._down_since = 0.0
        self._next_probe = 0.0
        self._probe_delay = self._base_delay
        self._closed = False
        self._records = RecordFilter(self.host_id, lambda: self.rooms)
        fixed = FetchMode(settings.fetch_min_bytes, settings.fetch_max_wait_ms)
        self._fetch = AdaptiveFetch(None if settings.fetch_adaptive else fixed)

    # -- lifecycle (chatsvc.bus.base.ManagedBus) -------------------------------------------

    @property
    def _base_delay(self) -> float:
        return self._settings.retry_backoff_ms / 1000

    @property
    def _brokers(self) -> str:
        return ",".join(self._settings.brokers)

    async def start(self) -> None:
        """Connect producer and consumer, retrying; raise ``StartupError`` with one line."""
        quiet_aiokafka()
        self._ssl = ssl_context(self._settings)
        settings = self._settings
        protocol = settings.security_protocol
        if protocol == "PLAINTEXT":
            log.warning("Kafka: PLAINTEXT (no KAFKA_SSL_* set)")
        elif settings.tls is not None:
            log.info(
                "Kafka: %s with client certificate %s, server verified against %s, hostname checked",
                protocol,
                settings.tls.client_cert,
                settings.tls.ca_cert,
            )
        else:
            log.info("Kafka: %s, server verified against the system CAs, hostname checked", protocol)
        attempts = settings.connect_retries
        delay = self._base_delay
        reason = ""
        for attempt in range(1, attempts + 1):
            try:
                await self._connect()
            except ConnectFailed as exc:
                reason = exc.reason
                self._metrics.bus_errors.labels("connect").inc()
                if attempt == attempts:
                    log.error(
                        "Kafka connect attempt %d/%d to %s failed: %s",
                        attempt,
                        attempts,
                        self._brokers,
                        reason,
                    )
                    break
                log.warning(
                    "Kafka connect attempt %d/%d to %s failed: %s; retrying in %.1fs",
                    attempt,
                    attempts,
                    self._brokers,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
            else:
                self._healthy = True
                self._next_probe = time.monotonic() + HEALTH_INTERVAL_SECONDS
                log.info(
                    "Kafka connected to %s (%s): topic %s, %d partition(s), replica host id %s, "
                    "fetch min %d byte(s) / max wait %d ms%s",
                    self._brokers,
                    protocol,
                    settings.topic,
                    len(self._partitions),
                    self.host_id,
                    self._fetch.mode.min_bytes,
                    self._fetch.mode.max_wait_ms,
                    " (adaptive)" if self._fetch.fixed is None else "",
                )
                return
        raise StartupError(
            f"cannot connect to Kafka at {self._brokers} after {attempts} attempt(s): {reason}"
        )

    async def check(self) -> None:
        """Raise ``BusUnavailable`` (naming Kafka and the reason) while not connected."""
        if self._closed:
            raise BusUnavailable("Kafka bus closed")
        if not self._healthy:
            raise BusUnavailable(f"Kafka unavailable: {self._down_reason}")

    async def aclose(self) -> None:
        """Stop the listener and close both clients (bounded); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._healthy = False
        thread: asyncio.Task[Any] | None = getattr(self, "thread", None)
        if thread is not None and not thread.done():
            thread.cancel()
            await asyncio.wait([thread], timeout=CLOSE_TIMEOUT_SECONDS)
        await self._drop_clients()
        log.info("Kafka bus closed")

    # -- control channel -------------------------------------------------------------------

    def on_control(self, handler: ControlHandler) -> None:
        """Call ``handler`` with the ``data`` of every control message from another replica."""
        self._control_handlers.append(handler)

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Publish a JSON-able control message; ``BusUnavailable`` if Kafka cannot take it.

        A ``room`` field, when present, is the partition key (ordered with that room's emits).
        """
        await self._publish({"method": "control", "host_id": self.host_id, "data": message})

    # -- interest-based routing (chatsvc.bus.kafka_log) -------------------------------------

    def on_enter(self, hook: Callable[[str], Awaitable[None]]) -> None:
        """Await ``hook(room)`` before a socket of this replica enters ``room``: with
        ``KAFKA_EVENTS_ROUTING`` the events log starts reading the room's partition first, so
        what the join then reads (``join {since}``, recovery's head) misses nothing. A hook
        raising (``BusUnavailable``) leaves the socket out of the room."""
        self._enter_hooks.append(hook)

    async def enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> Any:
        """python-socketio's enter_room, after the :meth:`on_enter` hooks for a local socket."""
        if (
            self._enter_hooks
            and isinstance(room, str)
            and room != sid
            # pre-connected: a recovering session re-entering its rooms
            and (self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace))
        ):
            for hook in self._enter_hooks:
                await hook(room)
        return await super().enter_room(sid, namespace, room, eio_sid=eio_sid)

    # -- python-socketio's pub/sub contract ------------------------------------------------

    async def _publish(self, data: dict[str, Any]) -> None:
        """Send one record and wait (bounded) for Kafka to acknowledge it."""
        producer = self._producer
        if producer is None or not self._healthy:
            self._metrics.bus_errors.labels("publish").inc()
            raise BusUnavailable(f"Kafka unavailable: {self._down_reason}")
        value = json.dumps(data, separators=(",", ":")).encode()
        headers = record_headers(data, room_emit=not self.write_only and is_room_emit(data, self.rooms))
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + PUBLISH_TIMEOUT_SECONDS
        try:
            await acked_send(
                producer, self.channel, deadline, value=value, key=record_key(data), headers=headers
            )
        except TimeoutError:
            self._metrics.bus_errors.labels("publish").inc()
            raise BusUnavailable(
                f"Kafka did not acknowledge a publish within {PUBLISH_TIMEOUT_SECONDS:.0f}s"
            ) from None
        except KafkaError as exc:
            self._metrics.bus_errors.labels("publish").inc()
            raise BusUnavailable(f"Kafka publish failed: {classify(exc, topic=self.channel)}") from None
        finally:
            self._metrics.bus_latency.observe(loop.time() - started)
        self._metrics.bus_published.inc()

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        """Yield Socket.IO messages from other replicas, forever (reconnecting as needed)."""
        while True:
            if self._consumer is None:
                await self._reconnect()
                continue
            try:
                batch = await self._consumer.getmany(timeout_ms=POLL_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # getmany only raises when the consumer cannot go on; build a new one.
                self._mark_down(classify(exc, topic=self.channel, tls=self._ssl is not None))
                await self._drop_clients()
                continue
            count = 0
            for records in batch.values():
                count += len(records)
                for record in records:
                    self._positions[record.partition] = record.offset + 1
                    # Decided before decoding: most records of a busy cluster are for rooms
                    # nobody here is in (chatsvc.bus.records).
                    skipped = self._records.skip(record.key, record.headers)
                    if skipped is not None:
                        self._metrics.bus_skipped.labels(skipped).inc()
                        continue
                    message = self._decode(record.value, record.partition, record.offset)
                    if message is not None and await self._accept(message):
                        yield message
            mode = self._fetch.observe(count, time.monotonic())
            if mode is not None:
                await self._switch_fetch(mode)
            await self._watch()

    # -- internals -------------------------------------------------------------------------

    def client_options(self) -> dict[str, Any]:
        """Brokers, TLS and SASL for this process's other Kafka clients (the room streams'
        log, chatsvc.bus.kafka_log; the notifications producer, chatsvc.bus.notify_kafka);
        valid once :meth:`start` has run."""
        return {"bootstrap_servers": list(self._settings.brokers), **self._client_options()}

    def _client_options(self) -> dict[str, Any]:
        """What producer, consumer and probe connections share."""
        return client_options(self._settings, self._ssl)

    async def _diagnose(self, brokers: Iterable[str] | None = None) -> str | None:
        """Raw connections to the brokers: None if one answers, else the classified reasons."""
        return await diagnose(self._settings.brokers if brokers is None else brokers, self._client_options())

    async def _connect(self) -> None:
        """Start producer (and consumer), resolve partitions and positions; or raise ConnectFailed."""
        reason = await self._diagnose()
        if reason is not None:
            raise ConnectFailed(reason)
        options = {"bootstrap_servers": list(self._settings.brokers), **self._client_options()}
        producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True, linger_ms=0)
        consumer = None
        try:
            async with asyncio.timeout(3 * REQUEST_TIMEOUT_MS / 1000):
                await producer.start()
                partitions = sorted(await producer.partitions_for(self.channel))
                if not self.write_only:
                    consumer = await self._start_consumer(options, partitions, self._fetch.mode)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                await stop_clients(producer, consumer)
                raise
            reason = classify(exc, topic=self.channel, tls=self._ssl is not None)
            if isinstance(exc, UnknownTopicOrPartitionError | KafkaTimeoutError | TimeoutError):
                reason = await explain_stall(producer, self._diagnose) or reason
            await stop_clients(producer, consumer)
            raise ConnectFailed(reason) from exc
        self._producer, self._consumer, self._partitions = producer, consumer, partitions

    async def _start_consumer(self, options: dict[str, Any], partitions: list[int], mode: FetchMode) -> Any:
        """A consumer of every partition, at the positions reached (else at the end)."""
        consumer = AIOKafkaConsumer(
            **options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=mode.max_wait_ms,
            fetch_min_bytes=mode.min_bytes,
        )
        try:
            await consumer.start()
            tps = [TopicPartition(self.channel, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, self._positions.get(tp.partition, ends[tp]))
        except BaseException:
            await stop_clients(None, consumer)
            raise
        return consumer

    async def _switch_fetch(self, mode: FetchMode) -> None:
        """Read on with a consumer fetching in ``mode`` (aiokafka fixes the fetch sizes at
        construction); from the positions reached, so nothing is lost or read twice. If the
        new consumer cannot start, the old one goes on and the next window tries again."""
        old = self._consumer
        options = {"bootstrap_servers": list(self._settings.brokers), **self._client_options()}
        try:
            async with asyncio.timeout(3 * REQUEST_TIMEOUT_MS / 1000):
                for p in self._partitions:  # also those not read from yet
                    self._positions[p] = await old.position(TopicPartition(self.channel, p))
                consumer = await self._start_consumer(options, self._partitions, mode)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("Kafka fetch mode unchanged: %s", classify(exc, topic=self.channel))
            return
        self._consumer = consumer
        self._fetch.switched(mode)
        await stop_clients(None, old)
        log.info("Kafka fetch now min %d byte(s) / max wait %d ms", mode.min_bytes, mode.max_wait_ms)

    async def _drop_clients(self) -> None:
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        await stop_clients(producer, consumer)

    async def _reconnect(self) -> None:
        """One reconnect attempt of the listener, then the next backoff step."""
        if self._closed:
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)
            return
        try:
            await self._connect()
        except ConnectFailed as exc:
            self._mark_down(exc.reason)
            await asyncio.sleep(self._probe_delay)
            self._probe_delay = min(self._probe_delay * 2, BACKOFF_CAP_SECONDS)
            return
        self._mark_up()

    async def _watch(self) -> None:
        """Every HEALTH_INTERVAL while up (with backoff while down): can Kafka still be reached?"""
        now = time.monotonic()
        if now < self._next_probe or self._producer is None:
            return
        try:
            # A metadata request for our topic only, on the producer's own connection.
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                if not await self._producer.client.force_metadata_update():
                    raise KafkaConnectionError("metadata request failed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = await self._diagnose() or classify(exc, topic=self.channel)
            self._mark_down(reason)
            self._next_probe = time.monotonic() + self._probe_delay
            self._probe_delay = min(self._probe_delay * 2, BACKOFF_CAP_SECONDS)
            return
        self._mark_up()

    def _mark_down(self, reason: str) -> None:
        self._metrics.bus_errors.labels("connect").inc()
        self._down_reason = reason
        if self._healthy:
            self._healthy = False
            self._down_since = time.monotonic()
            log.warning(
                "Kafka unavailable: %s; /readyz reports 503 and live fan-out pauses while "
                "reconnecting (backoff up to %.0fs; logged once per outage)",
                reason,
                BACKOFF_CAP_SECONDS,
            )
        else:
            log.debug("Kafka still unavailable: %s", reason)

    def _mark_up(self) -> None:
        self._next_probe = time.monotonic() + HEALTH_INTERVAL_SECONDS
        self._probe_delay = self._base_delay
        if not self._healthy and not self._closed:
            self._healthy = True
            log.info("Kafka reachable again after %.1fs", time.monotonic() - self._down_since)

    def _decode(self, value: bytes | None, partition: int, offset: int) -> dict[str, Any] | None:
        try:
            message = json.loads(value or b"")
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            self._metrics.bus_errors.labels("decode").inc()
            log.warning(
                "ignoring a record that is not a bus message (partition %d offset %d)", partition, offset
            )
            return None
        return message

    async def _accept(self, message: dict[str, Any]) -> bool:
        """Whether python-socketio should see ``message``; control messages go to handlers."""
        method = message["method"]
        if method == "callback":  # addressed to the host that asked for the ack
            return bool(message.get("host_id") == self.host_id)
        if message.get("host_id") == self.host_id:
            return False
        if method == "control":
            await self._dispatch_control(message.get("data"))
            return False
        return method in _SOCKETIO_METHODS

    async def _dispatch_control(self, data: Any) -> None:
        if not isinstance(data, dict):
            log.warning("ignoring a control message whose data is not an object")
            return
        for handler in list(self._control_handlers):
            try:
                await handler(data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("control handler failed on a %r message", data.get("type"))
