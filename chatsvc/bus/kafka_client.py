"""What every Kafka client of chatsvc shares: timeouts, TLS and SASL options, error
classification, the bounded acked send and a bounded shutdown.

Part of the Kafka adapter (with chatsvc.bus.kafka, the fan-out bus; chatsvc.bus.kafka_log,
the events topic; chatsvc.bus.notify_kafka, the notifications producer): the only modules
that import ``aiokafka`` (tests/test_architecture.py). Split out of chatsvc.bus.kafka so the
fan-out manager stays one cohesive module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)

from chatsvc.errors import StartupError
from chatsvc.settings import KafkaSettings
from chatsvc.tls import tls_context

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 5_000
"""Connect and request timeout of the Kafka clients (also how long a queued record lives)."""
BACKOFF_CAP_SECONDS = 5.0
CLOSE_TIMEOUT_SECONDS = 5.0

_CLIENT_CERT_REJECTED = frozenset(
    {
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)


_SASL_ERRORS = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


class ConnectFailed(Exception):
    """One connection attempt failed; ``reason`` is the classified one-line cause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def classify(exc: BaseException, *, topic: str = "", tls: bool = False) -> str:
    """A short, operator-readable reason for a failed Kafka connection or request."""
    cause: BaseException = exc
    # aiokafka wraps a connection that breaks mid-request; the interesting part is the cause.
    while isinstance(cause, KafkaConnectionError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message or cause.reason} (check KAFKA_SSL_CA_CERT)"
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or str(cause)
        if reason in _CLIENT_CERT_REJECTED:
            return (
                f"TLS handshake failure: the broker rejected the client certificate ({reason}); "
                "check KAFKA_SSL_CLIENT_CERT/KAFKA_SSL_CLIENT_KEY"
            )
        return f"TLS handshake failure: {reason}"
    if isinstance(cause, socket.gaierror):
        return f"unknown host ({cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError | KafkaTimeoutError):
        return "timeout"
    if isinstance(cause, asyncio.IncompleteReadError):
        # A TLS record header read as a Kafka frame size starts with 0x15 (alert) or 0x16.
        if (cause.expected or 0) >> 24 in {0x15, 0x16}:
            return "the broker answered with TLS: this listener needs the KAFKA_SSL_* variables"
        return "connection closed by the broker"
    if isinstance(cause, ConnectionResetError) and tls:
        return "TLS handshake failure: connection reset by the broker (is this a PLAINTEXT listener?)"
    if isinstance(cause, _SASL_ERRORS):
        return f"SASL authentication failed: {cause}"
    if isinstance(cause, UnknownTopicOrPartitionError):
        return f"topic {topic!r} does not exist and the broker did not create it (pre-create it)"
    if isinstance(cause, TopicAuthorizationFailedError):
        return f"not authorized for topic {topic!r}"
    if isinstance(cause, OSError):
        return f"network error: {cause.strerror or cause}"
    if isinstance(cause, KafkaError):
        return f"{type(cause).__name__}: {cause}"
    return f"{type(cause).__name__}: {cause}"


async def acked_send(producer: Any, topic: str, deadline: float, **record: Any) -> Any:
    """Send one record with ``producer`` and wait for the broker's ack until ``deadline``
    (event-loop time): its metadata, ``TimeoutError`` past the deadline, or the producer's
    ``KafkaError``. Shared by the fan-out bus and the events log (chatsvc.bus.kafka_log)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout_at(deadline):
        delivery = await producer.send(topic, **record)
    # asyncio.wait, not wait_for: cancelling aiokafka's delivery future is not ours to do.
    done, _ = await asyncio.wait([delivery], timeout=max(0.0, deadline - loop.time()))
    if not done:
        raise TimeoutError
    return delivery.result()


async def stop_clients(producer: Any, consumer: Any) -> None:
    """Stop clients without letting an unreachable broker hold up the caller for long."""
    for client in (consumer, producer):
        if client is None:
            continue
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await client.stop()
        except asyncio.CancelledError:
            # aiokafka's stop() can leak the CancelledError of its own fetcher task; only a
            # cancellation aimed at us may propagate, or a clean SIGTERM would exit 1.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.debug("closing a Kafka client raised its internal cancellation")
        except Exception as exc:
            log.debug("closing a Kafka client failed: %r", exc)


def quiet_aiokafka() -> None:
    """aiokafka logs every failed reconnect, many times a second during an outage.

    This adapter reports each attempt or outage once, with a classified reason, so
    aiokafka's own records are kept for ``CHATSVC_LOG_LEVEL=DEBUG``.
    """
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of ``settings`` (None for a plaintext or SASL_PLAINTEXT listener);
    ``StartupError`` naming the files when they cannot be used."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    tls = settings.tls
    if tls is None:
        return tls_context()  # the system's CAs
    try:
        return tls_context(
            ca_cert=tls.ca_cert, cert=tls.client_cert, key=tls.client_key, key_password=tls.key_password
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise StartupError(
            "Kafka TLS files cannot be used (KAFKA_SSL_CA_CERT="
            f"{tls.ca_cert}, KAFKA_SSL_CLIENT_CERT={tls.client_cert}, "
            f"KAFKA_SSL_CLIENT_KEY={tls.client_key}): {exc} "
            "(is the key the certificate's, and KAFKA_SSL_KEY_PASSWORD right?)"
        ) from None


def client_options(settings: KafkaSettings, context: ssl.SSLContext | None) -> dict[str, Any]:
    """What producers, consumers and probe connections share (no brokers)."""
    options: dict[str, Any] = {
        "client_id": settings.client_id,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "security_protocol": settings.security_protocol,
        "ssl_context": context,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        password = settings.sasl_password
        options["sasl_plain_password"] = password.reveal() if password else None
    return options


async def diagnose(brokers: Iterable[str], options: dict[str, Any]) -> str | None:
    """Open a raw connection to each broker; None if one answers, else the classified reasons.

    aiokafka only says "unable to bootstrap"; this is how a failure gets its cause.
    """
    reasons = []
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_MS / 1000):
                conn = await create_conn(host, int(port), **options)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reasons.append(f"{broker}: {classify(exc, tls=options.get('ssl_context') is not None)}")
            continue
        conn.close()
        return None
    return "; ".join(reasons)


async def explain_stall(producer: Any, probe: Callable[[Iterable[str]], Awaitable[str | None]]) -> str | None:
    """The classic cause of a bootstrap that works and then stalls: unreachable advertised
    listeners (``probe``: :func:`diagnose` bound to the client options)."""
    try:
        advertised = sorted(f"{b.host}:{b.port}" for b in producer.client.cluster.brokers())
    except Exception:
        return None
    if not advertised:
        return None
    failure = await probe(advertised)
    if failure is None:
        return None
    return (
        f"the brokers advertise {', '.join(advertised)}, unreachable from here ({failure}); "
        "check advertised.listeners"
    )


# -- the events topic's records, as its reader and its history writer both read them ------


def position_of(offset: int) -> int:
    """A record's position in its room stream: its partition offset plus one (0 stays "before
    every record" for ``join {since}`` and recovery, as in every store)."""
    return offset + 1


def decoded_record(record: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A record's JSON object body and its room (the key), or ``(None, None)`` for a record
    that is not a room event; what the reader and the history writer both decode."""
    try:
        body = json.loads(record.value or b"")
        room = record.key.decode() if record.key else None
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(body, dict) or not room:
        return None, None
    return body, room
