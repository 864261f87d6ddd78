"""Unit tests of AsyncKafkaManager: no broker; the Kafka clients are replaced by fakes."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError

from chatsvc.bus import kafka as kafka_module
from chatsvc.bus.kafka import AsyncKafkaManager, record_key
from chatsvc.bus.kafka_client import ConnectFailed, classify, ssl_context
from chatsvc.bus.records import BATCHED, record_headers
from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.settings import KafkaSettings, Secret, TlsFiles

SETTINGS = KafkaSettings(brokers=("127.0.0.1:1",), topic="t", connect_retries=3, retry_backoff_ms=1)


# -- classification and keys ---------------------------------------------------------------


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason  # type: ignore[misc]
    return error


def _broken(cause: BaseException) -> KafkaConnectionError:
    error = KafkaConnectionError("Connection at 127.0.0.1:19093 closed")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(111, "refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "unknown host (Name or service not known)"),
        (TimeoutError(), "timeout"),
        (KafkaTimeoutError(), "timeout"),
        (
            _broken(_ssl_error("SSLV3_ALERT_CERTIFICATE_UNKNOWN")),
            "the broker rejected the client certificate",
        ),
        (
            _broken(_ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED")),
            "the broker rejected the client certificate",
        ),
        (_ssl_error("WRONG_VERSION_NUMBER"), "TLS handshake failure: WRONG_VERSION_NUMBER"),
        (_broken(asyncio.IncompleteReadError(b"abc", 0x15030300)), "the broker answered with TLS"),
        (_broken(asyncio.IncompleteReadError(b"", 100)), "connection closed by the broker"),
        (UnknownTopicOrPartitionError(), "topic 't' does not exist"),
        (OSError(113, "No route to host"), "network error: No route to host"),
    ],
)
def test_failures_are_classified(exc: BaseException, expected: str) -> None:
    assert expected in classify(exc, topic="t")


def test_certificate_verification_names_the_ca_variable() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    reason = classify(error)
    assert reason.startswith("certificate verify failed: unable to get local issuer certificate")
    assert "KAFKA_SSL_CA_CERT" in reason


def test_a_reset_is_a_tls_failure_only_when_tls_is_on() -> None:
    assert "TLS handshake failure" in classify(ConnectionResetError(), tls=True)
    assert "TLS" not in classify(ConnectionResetError(), tls=False)


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ({"method": "emit", "room": "stocks.AAPL", "namespace": "/"}, b"stocks.AAPL"),
        ({"method": "emit", "room": None, "namespace": "/"}, b"/"),
        # A private room's emit to the room and its members' user rooms: keyed by the room.
        ({"method": "emit", "room": ["b", "@u:a"], "namespace": "/"}, b"b"),
        ({"method": "emit", "room": [], "namespace": "/"}, b"/"),
        ({"method": "disconnect", "sid": "s1", "namespace": "/"}, b"s1"),
        ({"method": "enter_room", "sid": "s1", "room": "r", "namespace": "/"}, b"r"),
        ({"method": "control", "data": {"type": "x", "room": "r"}}, b"r"),
        ({"method": "control", "data": {"type": "x"}}, b"control"),
    ],
)
def test_records_are_keyed_by_room_then_sid_then_namespace(message: dict[str, Any], key: bytes) -> None:
    assert record_key(message) == key


# -- fakes ---------------------------------------------------------------------------------


class FakeProducer:
    """Records sends; ``hang`` makes deliveries never complete."""

    def __init__(self, *, hang: bool = False, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.headers: list[list[tuple[str, bytes]]] = []
        self.hang = hang
        self.error = error
        self.stopped = False

    async def send(
        self, topic: str, *, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        self.headers.append(headers)
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            delivery.set_exception(self.error)
        elif not self.hang:
            delivery.set_result(None)
        return delivery

    async def stop(self) -> None:
        self.stopped = True


@dataclass
class Record:
    value: bytes
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeConsumer:
    """Hands out queued batches, then empty polls."""

    def __init__(self, batches: list[list[Record]]) -> None:
        self.batches = batches
        self.stopped = False

    async def position(self, tp: Any) -> int:
        return 0

    async def getmany(self, timeout_ms: int) -> dict[int, list[Record]]:
        if self.batches:
            return {0: self.batches.pop(0)}
        await asyncio.sleep(0.01)
        return {}

    async def stop(self) -> None:
        self.stopped = True


def manager(**overrides: Any) -> AsyncKafkaManager:
    bus = AsyncKafkaManager(SETTINGS, replica_id="unit")
    bus._producer = overrides.get("producer", FakeProducer())
    bus._consumer = overrides.get("consumer")
    bus._healthy = overrides.get("healthy", True)
    bus._next_probe = float("inf")  # no health probes against the fakes
    return bus


def record(message: dict[str, Any], offset: int = 0) -> Record:
    return Record(json.dumps(message).encode(), offset=offset)


async def take(stream: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    out = []
    async with asyncio.timeout(5):
        async for item in stream:
            out.append(item)
            if len(out) == count:
                break
    return out


# -- publish -------------------------------------------------------------------------------


async def test_publish_sends_json_keyed_by_room() -> None:
    producer = FakeProducer()
    bus = manager(producer=producer)
    await bus._publish({"method": "emit", "room": "r1", "data": ["hi"], "host_id": bus.host_id})
    [(topic, key, value)] = producer.sent
    assert (topic, key) == ("t", b"r1")
    assert json.loads(value) == {"method": "emit", "room": "r1", "data": ["hi"], "host_id": bus.host_id}


async def test_publish_while_down_fails_at_once_naming_kafka() -> None:
    producer = FakeProducer()
    bus = manager(producer=producer, healthy=False)
    bus._down_reason = "127.0.0.1:1: connection refused"
    with pytest.raises(BusUnavailable, match=re.escape("Kafka unavailable: 127.0.0.1:1: connection refused")):
        await bus._publish({"method": "emit", "room": "r"})
    assert producer.sent == []


async def test_publish_is_bounded_when_kafka_does_not_acknowledge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_module, "PUBLISH_TIMEOUT_SECONDS", 0.05)
    bus = manager(producer=FakeProducer(hang=True))
    with pytest.raises(BusUnavailable, match="did not acknowledge"):
        await bus._publish({"method": "emit", "room": "r"})


async def test_a_failed_delivery_becomes_bus_unavailable() -> None:
    bus = manager(producer=FakeProducer(error=KafkaTimeoutError()))
    with pytest.raises(BusUnavailable, match="Kafka publish failed: timeout"):
        await bus._publish({"method": "emit", "room": "r"})


async def test_emit_delivers_locally_and_publishes_a_json_safe_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = manager()
    published: list[dict[str, Any]] = []

    async def fake_publish(data: dict[str, Any]) -> None:
        published.append(json.loads(json.dumps(data)))  # must survive JSON, never pickle

    monkeypatch.setattr(bus, "_publish", fake_publish)
    await bus.emit("message", {"text": "hi", "blob": b"\x00\x01"}, namespace="/", room="r", skip_sid="s1")
    [message] = published
    assert message["method"] == "emit" and message["host_id"] == bus.host_id
    assert message["room"] == "r" and message["skip_sid"] == "s1" and message["binary"] is True


async def test_publish_control_wraps_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = manager()
    published: list[dict[str, Any]] = []

    async def fake_publish(data: dict[str, Any]) -> None:
        published.append(data)

    monkeypatch.setattr(bus, "_publish", fake_publish)
    await bus.publish_control({"type": "presence.heartbeat", "replica": "r1"})
    assert published == [
        {"method": "control", "host_id": bus.host_id, "data": {"type": "presence.heartbeat", "replica": "r1"}}
    ]


# -- listen --------------------------------------------------------------------------------


async def test_listen_yields_other_hosts_messages_and_routes_control() -> None:
    got_control: list[dict[str, Any]] = []
    bus = manager()

    async def on_control(data: dict[str, Any]) -> None:
        got_control.append(data)

    async def failing(data: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    bus.on_control(failing)  # a failing handler must not stop the others or the listener
    bus.on_control(on_control)
    other = "other-host"
    batch = [
        record({"method": "emit", "room": "r", "host_id": bus.host_id}, 0),  # own: dropped
        record({"method": "control", "host_id": bus.host_id, "data": {"type": "mine"}}, 1),  # own
        record({"method": "control", "host_id": other, "data": {"type": "theirs"}}, 2),
        Record(b"not json", offset=3),
        record({"method": "emit", "room": "r", "host_id": other, "data": ["x"]}, 4),
        record({"method": "callback", "host_id": "someone-else", "sid": "s", "id": 1, "args": []}, 5),
        record({"method": "callback", "host_id": bus.host_id, "sid": "s", "id": 2, "args": []}, 6),
        record({"method": "something-new", "host_id": other}, 7),
        record({"method": "disconnect", "sid": "s9", "namespace": "/", "host_id": other}, 8),
    ]
    bus._consumer = FakeConsumer([batch])
    stream = bus._listen()
    out = await take(stream, 3)
    await stream.aclose()
    assert [(m["method"], m.get("id") or m.get("sid") or m.get("room")) for m in out] == [
        ("emit", "r"),
        ("callback", 2),
        ("disconnect", "s9"),
    ]
    assert got_control == [{"type": "theirs"}]
    assert bus._positions == {0: 9}


async def test_room_emits_for_rooms_nobody_here_is_in_are_skipped_undecoded_and_counted() -> None:
    bus = manager()
    bus.rooms = {"/": {"here": {"s1": "e1"}, "s1": {"s1": "e1"}}}
    other = "other-host"

    def room_emit(room: str, offset: int) -> Record:
        message = {"method": "emit", "room": room, "namespace": "/", "host_id": other, "data": ["x"]}
        headers = tuple(record_headers(message, room_emit=True))
        # A body that is not JSON: decoding it would be counted as a decode error.
        return Record(b"{not json", offset=offset, key=room.encode(), headers=headers)

    control = {"method": "control", "host_id": other, "data": {"type": "theirs"}}
    batch = [
        room_emit("far", 0),
        Record(
            json.dumps(control).encode(),
            offset=1,
            key=b"far",
            headers=tuple(record_headers(control, room_emit=False)),
        ),
        record({"method": "emit", "room": "here", "namespace": "/", "host_id": other, "data": ["y"]}, 2),
    ]
    got: list[dict[str, Any]] = []

    async def on_control(data: dict[str, Any]) -> None:
        got.append(data)

    bus.on_control(on_control)
    bus._consumer = FakeConsumer([batch])
    stream = bus._listen()
    [delivered] = await take(stream, 1)
    await stream.aclose()
    assert delivered["room"] == "here" and got == [{"type": "theirs"}]
    assert bus._metrics.bus_skipped.labels("no_member")._value.get() == 1
    assert bus._metrics.bus_errors.labels("decode")._value.get() == 0
    assert bus._positions == {0: 3}


async def test_a_fetch_switch_that_fails_keeps_the_consumer_and_its_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = FakeConsumer([])
    bus = manager(consumer=old)
    bus._partitions = [0, 1]
    before = bus._fetch.mode

    async def refuse(*args: Any) -> Any:
        raise KafkaConnectionError("broker gone")

    monkeypatch.setattr(bus, "_start_consumer", refuse)
    await bus._switch_fetch(BATCHED)
    assert bus._consumer is old and not old.stopped and bus._fetch.mode == before
    assert bus._positions == {0: 0, 1: 0}  # what the old consumer had reached, kept


async def test_publish_marks_room_emits_but_not_local_sid_emits() -> None:
    producer = FakeProducer()
    bus = manager(producer=producer)
    bus.rooms = {"/": {"s1": {"s1": "e1"}}}
    await bus._publish({"method": "emit", "room": "r1", "namespace": "/", "host_id": bus.host_id})
    await bus._publish({"method": "emit", "room": "s1", "namespace": "/", "host_id": bus.host_id})
    host = bus.host_id.encode()
    assert producer.headers == [
        [("m", b"emit"), ("h", host), ("r", b"/")],
        [("m", b"emit"), ("h", host)],
    ]


async def test_listener_rebuilds_a_consumer_that_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(FakeConsumer):
        async def getmany(self, timeout_ms: int) -> dict[int, list[Record]]:
            raise KafkaConnectionError("boom")

    bus = manager(consumer=Broken([]))
    connects = 0

    async def connect() -> None:
        nonlocal connects
        connects += 1
        if connects < 3:
            raise ConnectFailed("127.0.0.1:1: connection refused")
        bus._producer = FakeProducer()
        bus._consumer = FakeConsumer([[record({"method": "emit", "room": "r", "host_id": "x"})]])

    monkeypatch.setattr(bus, "_connect", connect)
    caplog.set_level(logging.INFO, logger="chatsvc.bus.kafka")
    stream = bus._listen()
    [message] = await take(stream, 1)
    await stream.aclose()
    assert message["room"] == "r" and connects == 3
    outages = [r for r in caplog.records if r.getMessage().startswith("Kafka unavailable")]
    assert len(outages) == 1  # one outage, logged once despite three failures
    assert any(r.getMessage().startswith("Kafka reachable again") for r in caplog.records)
    await bus.check()


# -- lifecycle -----------------------------------------------------------------------------


async def test_start_makes_exactly_the_configured_attempts_then_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bus = AsyncKafkaManager(SETTINGS)
    calls = 0

    async def connect() -> None:
        nonlocal calls
        calls += 1
        raise ConnectFailed("127.0.0.1:1: connection refused")

    monkeypatch.setattr(bus, "_connect", connect)
    caplog.set_level(logging.INFO, logger="chatsvc.bus.kafka")
    with pytest.raises(StartupError) as raised:
        await bus.start()
    assert calls == 3
    assert str(raised.value) == (
        "cannot connect to Kafka at 127.0.0.1:1 after 3 attempt(s): 127.0.0.1:1: connection refused"
    )
    logged = [r.getMessage() for r in caplog.records if "Kafka connect attempt" in r.getMessage()]
    assert [line.split(" to ")[0] for line in logged] == [
        "Kafka connect attempt 1/3",
        "Kafka connect attempt 2/3",
        "Kafka connect attempt 3/3",
    ]
    assert any("Kafka: PLAINTEXT (no KAFKA_SSL_* set)" in r.getMessage() for r in caplog.records)


async def test_start_succeeds_after_a_failed_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = AsyncKafkaManager(SETTINGS)
    calls = 0

    async def connect() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectFailed("timeout")

    monkeypatch.setattr(bus, "_connect", connect)
    with pytest.raises(BusUnavailable, match="Kafka"):
        await bus.check()
    await bus.start()
    await bus.check()
    assert calls == 2


async def test_aclose_closes_clients_once_and_check_then_fails() -> None:
    producer, consumer = FakeProducer(), FakeConsumer([])
    bus = manager(producer=producer, consumer=consumer)
    await bus.aclose()
    await bus.aclose()
    assert producer.stopped and consumer.stopped
    with pytest.raises(BusUnavailable, match="closed"):
        await bus.check()


def test_sasl_runs_over_tls_with_the_system_cas_when_no_files_are_given() -> None:
    settings = KafkaSettings(
        brokers=("kafka.example.com:9093",),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="chat",
        sasl_password=Secret("s3cret"),
    )
    bus = AsyncKafkaManager(settings)
    bus._ssl = ssl_context(settings)
    options = bus._client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is True
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "chat")
    assert options["sasl_plain_password"] == "s3cret"


def test_plaintext_has_no_tls_context() -> None:
    bus = AsyncKafkaManager(SETTINGS)
    assert ssl_context(SETTINGS) is None
    assert bus._client_options()["security_protocol"] == "PLAINTEXT"


def test_unloadable_tls_files_are_a_startup_error_naming_the_variables(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    settings = KafkaSettings(brokers=("127.0.0.1:1",), tls=TlsFiles(junk, junk, junk))
    with pytest.raises(StartupError, match=f"KAFKA_SSL_CA_CERT={junk}"):
        ssl_context(settings)


class StallingProducer:
    """Bootstraps, then cannot get the topic's metadata."""

    def __init__(self, **options: Any) -> None:
        self.client = SimpleNamespace(
            cluster=SimpleNamespace(brokers=lambda: [SimpleNamespace(host="10.0.0.9", port=9092)])
        )

    async def start(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        raise UnknownTopicOrPartitionError()

    async def stop(self) -> None:
        pass


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [
        ("10.0.0.9:9092: timeout", "the brokers advertise 10.0.0.9:9092, unreachable from here"),
        (None, "topic 't' does not exist and the broker did not create it"),
    ],
)
async def test_a_stalled_connect_is_explained(
    monkeypatch: pytest.MonkeyPatch, advertised: str | None, expected: str
) -> None:
    bus = AsyncKafkaManager(SETTINGS)
    diagnoses = iter([None, advertised])  # bootstrap answers; then the advertised address

    async def diagnose(brokers: Any = None) -> str | None:
        return next(diagnoses)

    monkeypatch.setattr(kafka_module, "AIOKafkaProducer", StallingProducer)
    monkeypatch.setattr(bus, "_diagnose", diagnose)
    with pytest.raises(ConnectFailed) as raised:
        await bus._connect()
    assert expected in raised.value.reason
