"""The settings' types: the frozen section dataclasses, :class:`Secret` and the constants that
name the legal values of a variable. Imports nothing of chatsvc; the readers that fill these
live in :mod:`chatsvc.settings.reader` and the ``read_*`` modules, the root object in
:mod:`chatsvc.settings.root`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

JWT_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
JWT_PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
)
#: Keys from a JWKS are RSA or EC only: never HMAC (a published "secret" is no secret).
JWT_JWKS_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
CONSISTENCY_LEVELS = frozenset(
    {"ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
)
SASL_MECHANISMS = frozenset({"SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"})
STORE_BACKENDS = ("sqlite", "memory", "scylla")


#: The transport's fast paths, each of which ``CHATSVC_FAST_PATHS_OFF`` may turn off
#: (``chatsvc.transport.fast_paths.FastPaths`` has one switch per name and uses this tuple).
FAST_PATHS = (
    "frame-once",
    "lean-socket",
    "receive-packet",
    "packet-serializer",
    "direct-emit",
    "event-worker",
    "event-dispatch",
)


class Secret:
    """A string that never shows itself in ``repr``/``str`` (and so never in logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is handed to a library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


@dataclass(frozen=True)
class TlsFiles:
    """A CA, client certificate and key chosen all-or-nothing from the environment."""

    ca_cert: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    key_password: Secret | None = None


@dataclass(frozen=True)
class JwtSettings:
    """How socket and admin tokens are verified (and, in development, minted)."""

    secret: Secret | None
    public_key_file: Path | None
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None
    leeway_seconds: float
    dev_secret_generated: bool = False
    #: The identity provider's JWKS (``CHATSVC_JWT_JWKS_URL``); keys selected by ``kid``.
    jwks_url: str | None = None
    #: Least time between two JWKS fetches (also the shortest cache lifetime honoured).
    jwks_min_interval_seconds: float = 30.0


@dataclass(frozen=True)
class Limits:
    """Bounds on everything a client controls."""

    message_bytes: int = 4096
    #: Different emoji one message may carry (issue 25); more is ``reaction_limit``.
    reaction_kinds: int = 20
    #: Users one message may mention (issue 25); more is ``invalid_payload``.
    mentions_per_message: int = 10
    #: Pins one room may hold (issue 25); more is ``pin_limit``.
    pins_per_room: int = 50
    messages_per_second: float = 5.0
    burst: int = 10
    rooms_per_connection: int = 50
    #: Sockets one user (``sub``) may hold on one replica.
    connections_per_user: int = 20
    #: Sockets one client IP may hold on one replica (0: unbounded).
    connections_per_ip: int = 0
    history_page_max: int = 100
    history_page_default: int = 50
    catchup_max: int = 500
    #: ``join {since: <message id>}`` also replays this much before ``since`` (see
    #: ChatService.catch_up); only where ids order things (positions need no overlap).
    catchup_overlap_ms: int = 2000
    unread_cap: int = 1000
    http_buffer_bytes: int = 65536
    #: Packets queued for one socket that is not taking them (a slow consumer) before it is ended.
    queued_packets_max: int = 1000
    #: Socket.IO packets of one connection waiting for its event worker (the reader handles
    #: Engine.IO control itself); more is refused ``rate_limited``, never buffered.
    pending_events_max: int = 64
    #: Connection state recovery: how long a dropped socket's session is kept (0: off).
    recovery_window_seconds: int = 120
    #: Most events one recovery replays; more missed means a fresh connect instead.
    recovery_max_replay: int = 500
    #: Conversations (issue 24): members of one private room, private/direct rooms one
    #: user may be in, new DMs one user may open per minute (per replica), users one user
    #: may block.
    members_per_room: int = 1000
    rooms_per_user: int = 500
    dms_per_minute: int = 20
    blocks_per_user: int = 1000


#: The default cashtag: ``$`` then 1..5 letters with an optional class suffix (``$BRK.B``)
#: or a 6-digit Korean code (``$005930``), not inside a word and not followed by one.
CASHTAG_PATTERN = r"(?<![\w$])\$([A-Za-z]{1,5}(?:\.[A-Za-z]{1,2})?|[0-9]{6})(?![\w])"


@dataclass(frozen=True)
class ModeSettings:
    """Slow and surge mode, cashtags and sentiment (issue 25)."""

    #: Longest slow mode interval a moderator may set.
    slow_mode_max_seconds: int = 3600
    #: Surge: a public room posting more than ``surge_rate`` messages a second, averaged
    #: over ``surge_window_seconds`` (cluster-wide, counted in the store), is slowed to one
    #: message per user per ``surge_slow_mode_seconds`` until it falls to half of that.
    #: ``surge_rate`` 0 turns surge mode off.
    surge_rate: float = 10.0
    surge_window_seconds: int = 10
    surge_slow_mode_seconds: int = 5
    cashtag_pattern: str = CASHTAG_PATTERN
    #: Cashtags kept per message (the first ones, repeats dropped).
    tickers_per_message: int = 10
    #: At most one ``sentiment`` event per room per this many milliseconds (per replica).
    sentiment_event_ms: int = 3000


@dataclass(frozen=True)
class SpamSettings:
    """The spam filters of a user's message (issue 25, chatsvc.chat.spam). A window or age of
    0 turns its rule off; a maximum of 0 allows none."""

    #: The same normalised text from one user within this window (any room) is refused.
    duplicate_window_seconds: int = 60
    #: Texts shorter than this (normalised) never count as duplicates ("ok", "+1").
    duplicate_min_chars: int = 8
    #: More links than this in one message is refused.
    max_links: int = 3
    #: Links from a token whose ``iat`` is younger than this many minutes are refused.
    link_min_token_age_minutes: int = 0
    #: More mentions than this in one message is refused.
    max_mentions: int = 5
    #: The blocklist, compiled-ready regular expressions (``CHATSVC_SPAM_BLOCKLIST_FILE``).
    blocklist: tuple[str, ...] = ()
    #: ``reject`` refuses a message with a blocked word; ``mask`` stars the words out.
    blocklist_action: str = "reject"
    #: Users whose recent texts a replica remembers for the duplicate rule (least recent dropped).
    tracked_users: int = 10_000


@dataclass(frozen=True)
class KafkaSettings:
    """Cross-replica fan-out over Kafka; present only when ``KAFKA_BROKERS`` is set."""

    brokers: tuple[str, ...]
    topic: str = "chatsvc.fanout"
    #: The room streams (issue 21): messages, edits, deletes, reactions, pins, keyed by room;
    #: a record's offset is its position (chatsvc.bus.kafka_log).
    events_topic: str = "chatsvc.events"
    #: The longest store outage the history writer rides out without losing records: the
    #: events topic's retention.ms is checked against it at startup (chatsvc.bus.kafka_retention).
    events_min_retention_hours: int = 168
    #: KAFKA_EVENTS_ROUTING: read only the events topic's partitions of rooms with a local
    #: member or send (docs/scaling.md, interest-based routing); off: every partition.
    events_routing: bool = False
    client_id: str = "chatsvc"
    connect_retries: int = 5
    retry_backoff_ms: int = 500
    #: How long the broker may hold a fetch for ``fetch_min_bytes`` to arrive (aiokafka's
    #: defaults: 500 ms, 1 byte, i.e. answer as soon as anything is there). docs/scaling.md:
    #: bigger batches cut every replica's CPU per record at the cost of latency and idle fetches.
    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 1
    #: Neither KAFKA_FETCH_* set: eager or batched fetches by the rate read (chatsvc.bus.records).
    fetch_adaptive: bool = False
    tls: TlsFiles | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    #: CHATSVC_NOTIFY_TOPIC: offline notifications go to this topic (chatsvc.bus.notify_kafka).
    notify_topic: str | None = None
    #: CHATSVC_NOTIFY_RETRY_WINDOW_MS: how long the producer retries a notification record
    #: before the relay calls the batch failed and tries again (chatsvc.chat.notify_relay).
    notify_retry_window_ms: int = 5_000
    #: CHATSVC_NOTIFY_LEASE_SECONDS: a relaying replica's lease; a dead one's is taken over after it.
    notify_lease_seconds: int = 15

    @property
    def security_protocol(self) -> str:
        """The Kafka ``security.protocol`` these settings amount to.

        SASL always runs over TLS (never credentials in the clear): with the ``KAFKA_SSL_*``
        files when set, else against the system CAs, as managed clusters expect.
        """
        if self.sasl_mechanism:
            return "SASL_SSL"
        return "SSL" if self.tls else "PLAINTEXT"


@dataclass(frozen=True)
class ScyllaSettings:
    """History in ScyllaDB; present only when ``SCYLLA_CONTACT_POINTS`` is set."""

    contact_points: tuple[str, ...]
    port: int = 9042
    keyspace: str = "chatsvc"
    local_dc: str | None = None
    username: str | None = None
    password: Secret | None = None
    replication: str = "SimpleStrategy:1"
    consistency: str = "LOCAL_QUORUM"
    tls: TlsFiles | None = None
    request_timeout_seconds: float = 5.0
    max_in_flight: int = 256


@dataclass(frozen=True)
class GrpcSettings:
    """The gRPC admin API listener."""

    host: str = "127.0.0.1"
    port: int = 50051
    enabled: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    grace_seconds: float = 5.0
