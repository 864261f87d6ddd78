"""Configuration: read once from the environment into one frozen, validated object.

Every variable the service understands is declared here and documented in the README.
A bad value raises :class:`SettingsError` naming the variable, and the process stops
before it binds a port. Secrets are wrapped in :class:`Secret` so that neither logs nor
reprs ever show them.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

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


class SettingsError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


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


#: Bounds on the blocklist file: it is read at start-up, every entry runs on every message.
BLOCKLIST_MAX_BYTES = 64 * 1024
BLOCKLIST_MAX_ENTRIES = 1000
BLOCKLIST_PATTERN_MAX = 256
#: Text an entry must not match an empty string in (word edges, digits, spaces, ends).
BLOCKLIST_PROBE = "ab 12 cd"


def load_blocklist(path: Path) -> tuple[str, ...]:
    """The blocklist file as regular expressions: one entry a line, ``#`` comments and blank
    lines ignored; ``re:<regex>`` is a regular expression, anything else a word or phrase
    matched as a whole word, case-insensitively. Raise ValueError naming the line."""
    if path.stat().st_size > BLOCKLIST_MAX_BYTES:
        raise ValueError(f"{path} is larger than {BLOCKLIST_MAX_BYTES} bytes")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8") from None
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(out) == BLOCKLIST_MAX_ENTRIES:
            raise ValueError(f"{path} has more than {BLOCKLIST_MAX_ENTRIES} entries")
        if len(entry) > BLOCKLIST_PATTERN_MAX:
            raise ValueError(f"{path} line {number}: longer than {BLOCKLIST_PATTERN_MAX} characters")
        if entry.startswith("re:"):
            pattern = entry[3:]
        else:
            words = unicodedata.normalize("NFKC", entry).casefold().split()
            pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"{path} line {number}: not a regular expression ({exc})") from None
        # An entry that can match nothing at all (``a*``, ``\b``) would refuse, or star out
        # nothing in, every message.
        if not pattern or any(m.end() == m.start() for m in compiled.finditer(BLOCKLIST_PROBE)):
            raise ValueError(f"{path} line {number}: matches the empty text")
        out.append(pattern)
    return tuple(out)


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


@dataclass(frozen=True)
class Settings:
    """Everything the process needs, validated. Build it with :meth:`from_env`."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Serve ``/metrics`` on this port instead of ``port`` (always set in production).
    metrics_port: int | None = None
    data_dir: Path = Path("data")
    environment: str = "development"
    log_level: str = "INFO"
    #: ``text`` (one plain line per record) or ``json`` (one JSON object per line).
    log_format: str = "text"
    cors_origins: tuple[str, ...] = ()
    #: Peers (CIDRs) whose ``X-Forwarded-For`` names the client IP (the Ingress, a proxy).
    trusted_proxies: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    jwt: JwtSettings = field(
        default_factory=lambda: JwtSettings(
            secret=None,
            public_key_file=None,
            algorithms=("HS256",),
            issuer=None,
            audience=None,
            leeway_seconds=0.0,
        )
    )
    limits: Limits = field(default_factory=Limits)
    spam: SpamSettings = field(default_factory=SpamSettings)
    modes: ModeSettings = field(default_factory=ModeSettings)
    ping_interval_seconds: float = 25.0
    ping_timeout_seconds: float = 20.0
    shutdown_timeout_seconds: float = 10.0
    admin_ui_username: str | None = None
    admin_ui_password: Secret | None = None
    #: Serve the web chat client at ``/`` (on by default in development only).
    web_app: bool = True
    replica_id: str = ""
    auto_migrate: bool = True
    #: History backend: ``sqlite`` (embedded default), ``memory`` (not durable) or ``scylla``.
    store: str = "sqlite"
    #: Negotiate permessage-deflate with clients that offer it (costs memory and CPU).
    ws_compression: bool = False
    #: The transport fast paths (``FAST_PATHS``) turned off: python-socketio's and
    #: python-engineio's stock code runs instead (the security fixes stay either way).
    fast_paths_off: frozenset[str] = frozenset()
    kafka: KafkaSettings | None = None
    scylla: ScyllaSettings | None = None
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    #: How often each replica tells the others it is alive (and who is online on it).
    cluster_heartbeat_seconds: float = 2.0
    #: Rooms with at least this many users online (cluster-wide) get presence, typing and
    #: read receipts aggregated per window instead of per user (chatsvc.chat.coalesce).
    big_room_members: int = 100
    #: At most one ``presence {room, online}`` per big room per this many milliseconds.
    presence_coalesce_ms: int = 1500
    #: From this many users online, typing is not delivered at all in a room.
    typing_off_members: int = 1000

    @property
    def is_production(self) -> bool:
        """True when running with ``CHATSVC_ENV=production`` (no dev conveniences)."""
        return self.environment == "production"

    @property
    def sqlite_path(self) -> Path:
        """Where the embedded history database lives."""
        return self.data_dir / "chatsvc.sqlite3"

    def describe(self) -> dict[str, object]:
        """A log-safe summary: secrets masked, paths as strings."""
        return _describe(self)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise :class:`SettingsError` on the first bad one."""
        return _Reader(os.environ if env is None else env).settings()


def _describe(obj: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.name == "blocklist":  # up to 1000 patterns: the start-up line names how many
            out[f.name] = f"{len(value)} entries"
            continue
        if hasattr(value, "__dataclass_fields__"):
            out[f.name] = _describe(value)
        elif isinstance(value, Secret):
            out[f.name] = "***"
        elif isinstance(value, Path):
            out[f.name] = str(value)
        else:
            out[f.name] = value
    return out


class _Reader:
    """Parses typed values out of an environment mapping, naming the variable on error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def _parse(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(name, f"expected {what}, got {raw!r}") from None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self._parse(name, default, int, "an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(name, f"must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._parse(name, default, float, "a number")
        # float() accepts "nan" and "inf"; nan passes every comparison and would, for
        # example, make the rate limiter refuse everything.
        if not math.isfinite(value):
            raise SettingsError(name, f"expected a finite number, got {value}")
        if value < minimum:
            raise SettingsError(name, f"must be >= {minimum}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(name, f"expected true or false, got {raw!r}")

    def items(self, name: str) -> tuple[str, ...]:
        raw = self.raw(name)
        if raw is None:
            return ()
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def networks(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of CIDRs (or single addresses), normalised."""
        out = []
        for item in self.items(name):
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise SettingsError(name, f"expected CIDRs like 10.0.0.0/8, got {item!r}") from None
        return tuple(out)

    def secret(self, name: str) -> Secret | None:
        raw = self.raw(name)
        return Secret(raw) if raw is not None else None

    def readable_file(self, name: str) -> Path | None:
        raw = self.raw(name)
        if raw is None:
            return None
        path = Path(raw)
        if not path.is_file():
            raise SettingsError(name, f"file not found: {path}")
        if not os.access(path, os.R_OK):
            raise SettingsError(name, f"file not readable: {path}")
        return path

    def tls_files(self, ca: str, cert: str, key: str, password: str) -> TlsFiles | None:
        """All three set → mutual TLS; none → None; a partial set is an error naming the gap."""
        names = (ca, cert, key)
        present = [n for n in names if self.raw(n) is not None]
        if not present:
            if self.raw(password) is not None:
                raise SettingsError(password, f"set, but {ca}, {cert} and {key} are not")
            return None
        missing = [n for n in names if n not in present]
        if missing:
            raise SettingsError(
                missing[0],
                "TLS needs all of "
                + ", ".join(names)
                + f"; set: {', '.join(present)}; missing: {', '.join(missing)}",
            )
        ca_path, cert_path, key_path = (self.readable_file(n) for n in names)
        assert ca_path and cert_path and key_path
        return TlsFiles(ca_path, cert_path, key_path, self.secret(password))

    def settings(self) -> Settings:
        environment = self.text("CHATSVC_ENV", "development").lower()
        if environment not in {"development", "production"}:
            raise SettingsError("CHATSVC_ENV", f"expected development or production, got {environment!r}")
        data_dir = Path(self.text("CHATSVC_DATA_DIR", "data"))
        log_level = self.text("CHATSVC_LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(
                "CHATSVC_LOG_LEVEL", f"expected DEBUG, INFO, WARNING or ERROR, got {log_level!r}"
            )
        log_format = self.text("CHATSVC_LOG_FORMAT", "text").lower()
        if log_format not in {"text", "json"}:
            raise SettingsError("CHATSVC_LOG_FORMAT", f"expected text or json, got {log_format!r}")

        tls_cert = self.readable_file("CHATSVC_TLS_CERT")
        tls_key = self.readable_file("CHATSVC_TLS_KEY")
        if (tls_cert is None) != (tls_key is None):
            missing = "CHATSVC_TLS_KEY" if tls_key is None else "CHATSVC_TLS_CERT"
            raise SettingsError(missing, "CHATSVC_TLS_CERT and CHATSVC_TLS_KEY must be set together")

        for origin in (origins := self.items("CHATSVC_CORS_ORIGINS")):
            if origin == "*":
                continue
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise SettingsError(
                    "CHATSVC_CORS_ORIGINS",
                    f"each origin must look like https://host[:port] (no path), got {origin!r}",
                )

        ping_interval = self.number("CHATSVC_PING_INTERVAL", 25.0, minimum=1.0)
        ping_timeout = self.number("CHATSVC_PING_TIMEOUT", 20.0, minimum=1.0)

        admin_user = self.optional("CHATSVC_ADMIN_UI_USERNAME")
        admin_password = self.secret("CHATSVC_ADMIN_UI_PASSWORD")
        if (admin_user is None) != (admin_password is None):
            raise SettingsError(
                "CHATSVC_ADMIN_UI_PASSWORD" if admin_password is None else "CHATSVC_ADMIN_UI_USERNAME",
                "the Admin UI needs both CHATSVC_ADMIN_UI_USERNAME and CHATSVC_ADMIN_UI_PASSWORD",
            )

        return Settings(
            host=self.text("CHATSVC_HOST", "127.0.0.1"),
            port=self.integer("CHATSVC_PORT", 8080, minimum=0, maximum=65535),
            metrics_port=self.metrics_port(environment),
            data_dir=data_dir,
            environment=environment,
            log_level=log_level,
            log_format=log_format,
            cors_origins=origins,
            trusted_proxies=self.networks("CHATSVC_TRUSTED_PROXIES"),
            tls_cert=tls_cert,
            tls_key=tls_key,
            jwt=self.jwt(environment, data_dir),
            limits=self.limits(),
            spam=self.spam(),
            modes=self.modes(),
            ping_interval_seconds=ping_interval,
            ping_timeout_seconds=ping_timeout,
            shutdown_timeout_seconds=self.number("CHATSVC_SHUTDOWN_TIMEOUT", 10.0, minimum=0.5),
            admin_ui_username=admin_user,
            admin_ui_password=admin_password,
            web_app=self.boolean("CHATSVC_WEB_APP", environment != "production"),
            replica_id=self.text("CHATSVC_REPLICA_ID", self.text("HOSTNAME", "") or secrets.token_hex(4)),
            auto_migrate=self.boolean("CHATSVC_AUTO_MIGRATE", True),
            store=self.store(environment),
            ws_compression=self.boolean("CHATSVC_WS_COMPRESSION", False),
            fast_paths_off=self.fast_paths_off(),
            kafka=self.kafka(),
            scylla=self.scylla(),
            grpc=self.grpc(),
            cluster_heartbeat_seconds=self.number("CHATSVC_CLUSTER_HEARTBEAT", 2.0, minimum=0.1),
            **self.big_rooms(),
        )

    def big_rooms(self) -> dict[str, int]:
        """The thresholds and window of chatsvc.chat.coalesce."""
        big = self.integer("CHATSVC_BIG_ROOM_MEMBERS", 100, minimum=1)
        typing_off = self.integer("CHATSVC_TYPING_OFF_MEMBERS", max(1000, big), minimum=1)
        if typing_off < big:
            raise SettingsError("CHATSVC_TYPING_OFF_MEMBERS", "must be at least CHATSVC_BIG_ROOM_MEMBERS")
        return {
            "big_room_members": big,
            "presence_coalesce_ms": self.integer(
                "CHATSVC_PRESENCE_COALESCE_MS", 1500, minimum=50, maximum=60_000
            ),
            "typing_off_members": typing_off,
        }

    def fast_paths_off(self) -> frozenset[str]:
        """``CHATSVC_FAST_PATHS=false`` turns every fast path off; ``CHATSVC_FAST_PATHS_OFF``
        names some of them (the benchmark's ablation)."""
        if not self.boolean("CHATSVC_FAST_PATHS", True):
            return frozenset(FAST_PATHS)
        names = frozenset(self.items("CHATSVC_FAST_PATHS_OFF"))
        unknown = sorted(names - set(FAST_PATHS))
        if unknown:
            raise SettingsError(
                "CHATSVC_FAST_PATHS_OFF", f"unknown fast paths {unknown}; known: {', '.join(FAST_PATHS)}"
            )
        return names

    def metrics_port(self, environment: str) -> int | None:
        """``CHATSVC_METRICS_PORT``: 9090 in production, where the public listener (the
        Ingress routes ``/`` to it) must not serve ``/metrics``; unset in development
        (``/metrics`` on ``CHATSVC_PORT``)."""
        production = environment == "production"
        port = self.integer("CHATSVC_METRICS_PORT", 9090 if production else 0, minimum=0, maximum=65535)
        if port == 0 and production:
            raise SettingsError("CHATSVC_METRICS_PORT", "production serves /metrics on its own port, not 0")
        if port != 0 and port in {
            self.integer("CHATSVC_PORT", 8080),
            self.integer("CHATSVC_GRPC_PORT", 50051),
        }:
            raise SettingsError("CHATSVC_METRICS_PORT", "must differ from CHATSVC_PORT and CHATSVC_GRPC_PORT")
        return port or None

    def jwt(self, environment: str, data_dir: Path) -> JwtSettings:
        secret = self.secret("CHATSVC_JWT_SECRET")
        public_key = self.readable_file("CHATSVC_JWT_PUBLIC_KEY")
        jwks_url = self.optional("CHATSVC_JWT_JWKS_URL")
        if jwks_url is not None:
            return self.jwks(jwks_url, environment, secret is not None or public_key is not None)
        if secret is not None and public_key is not None:
            raise SettingsError(
                "CHATSVC_JWT_PUBLIC_KEY",
                "set either CHATSVC_JWT_SECRET (HMAC) or CHATSVC_JWT_PUBLIC_KEY (RSA/EC), not both",
            )
        default_algorithms = "RS256,ES256" if public_key else "HS256"
        algorithms = self.items("CHATSVC_JWT_ALGORITHMS") or tuple(default_algorithms.split(","))
        allowed = JWT_PUBLIC_KEY_ALGORITHMS if public_key else JWT_HMAC_ALGORITHMS
        wrong = [a for a in algorithms if a not in allowed]
        if wrong:
            kind = "a public key" if public_key else "an HMAC secret"
            raise SettingsError(
                "CHATSVC_JWT_ALGORITHMS",
                f"{', '.join(wrong)} cannot be used with {kind}; allowed: {', '.join(sorted(allowed))}",
            )
        if secret is not None and len(secret.reveal()) < 32:
            raise SettingsError("CHATSVC_JWT_SECRET", "must be at least 32 characters")
        generated = False
        if secret is None and public_key is None:
            if environment == "production":
                raise SettingsError(
                    "CHATSVC_JWT_SECRET",
                    "production needs CHATSVC_JWT_SECRET or CHATSVC_JWT_PUBLIC_KEY",
                )
            secret = Secret(_dev_secret(data_dir))
            generated = True
        return JwtSettings(
            secret=secret,
            public_key_file=public_key,
            algorithms=algorithms,
            issuer=self.optional("CHATSVC_JWT_ISSUER"),
            audience=self.optional("CHATSVC_JWT_AUDIENCE"),
            leeway_seconds=self.number("CHATSVC_JWT_LEEWAY", 0.0),
            dev_secret_generated=generated,
        )

    def jwks(self, url: str, environment: str, other_key: bool) -> JwtSettings:
        """Keys from an identity provider's JWKS instead of a secret or a PEM file."""
        if other_key:
            raise SettingsError(
                "CHATSVC_JWT_JWKS_URL",
                "set one of CHATSVC_JWT_JWKS_URL, CHATSVC_JWT_PUBLIC_KEY or CHATSVC_JWT_SECRET",
            )
        _validate_jwks_url(url, environment)
        algorithms = self.items("CHATSVC_JWT_ALGORITHMS") or JWT_JWKS_ALGORITHMS
        wrong = [a for a in algorithms if a not in JWT_JWKS_ALGORITHMS]
        if wrong:
            raise SettingsError(
                "CHATSVC_JWT_ALGORITHMS",
                f"{', '.join(wrong)} cannot be used with a JWKS; allowed: {', '.join(JWT_JWKS_ALGORITHMS)}",
            )
        interval = self.number("CHATSVC_JWT_JWKS_MIN_INTERVAL", 30.0, minimum=1.0)
        if interval > 3600:
            raise SettingsError("CHATSVC_JWT_JWKS_MIN_INTERVAL", f"at most 3600 seconds, got {interval:g}")
        return JwtSettings(
            secret=None,
            public_key_file=None,
            algorithms=algorithms,
            issuer=self.optional("CHATSVC_JWT_ISSUER"),
            audience=self.optional("CHATSVC_JWT_AUDIENCE"),
            leeway_seconds=self.number("CHATSVC_JWT_LEEWAY", 0.0),
            jwks_url=url,
            jwks_min_interval_seconds=interval,
        )

    def limits(self) -> Limits:
        rate = self.number("CHATSVC_RATE_LIMIT_PER_SECOND", 5.0, minimum=0.1)
        return Limits(
            message_bytes=self.integer("CHATSVC_MAX_MESSAGE_BYTES", 4096, minimum=1, maximum=1_000_000),
            reaction_kinds=self.integer("CHATSVC_MAX_REACTION_KINDS", 20, minimum=1, maximum=1000),
            mentions_per_message=self.integer("CHATSVC_MAX_MENTIONS", 10, minimum=0, maximum=100),
            pins_per_room=self.integer("CHATSVC_MAX_PINS", 50, minimum=1, maximum=1000),
            messages_per_second=rate,
            burst=self.integer("CHATSVC_RATE_LIMIT_BURST", 10, minimum=1),
            rooms_per_connection=self.integer("CHATSVC_MAX_ROOMS_PER_CONNECTION", 50, minimum=1),
            connections_per_user=self.integer("CHATSVC_MAX_CONNECTIONS_PER_USER", 20, minimum=1),
            connections_per_ip=self.integer("CHATSVC_MAX_CONNECTIONS_PER_IP", 0, minimum=0),
            http_buffer_bytes=self.integer("CHATSVC_MAX_HTTP_BUFFER_BYTES", 65536, minimum=1024),
            queued_packets_max=self.integer(
                "CHATSVC_MAX_QUEUED_PACKETS", 1000, minimum=16, maximum=1_000_000
            ),
            pending_events_max=self.integer("CHATSVC_MAX_PENDING_EVENTS", 64, minimum=1, maximum=10_000),
            catchup_max=self.integer("CHATSVC_CATCHUP_MAX", 500, minimum=1, maximum=10_000),
            catchup_overlap_ms=self.integer("CHATSVC_CATCHUP_OVERLAP_MS", 2000, minimum=0, maximum=60_000),
            # A day at most: room events (the edit/delete log replays read) are kept that long.
            recovery_window_seconds=self.integer("CHATSVC_RECOVERY_WINDOW", 120, minimum=0, maximum=86_400),
            recovery_max_replay=self.integer("CHATSVC_RECOVERY_MAX_REPLAY", 500, minimum=1, maximum=10_000),
            members_per_room=self.integer("CHATSVC_MAX_MEMBERS_PER_ROOM", 1000, minimum=2, maximum=100_000),
            rooms_per_user=self.integer("CHATSVC_MAX_ROOMS_PER_USER", 500, minimum=1, maximum=100_000),
            dms_per_minute=self.integer("CHATSVC_MAX_DMS_PER_MINUTE", 20, minimum=1, maximum=10_000),
            blocks_per_user=self.integer("CHATSVC_MAX_BLOCKS_PER_USER", 1000, minimum=1, maximum=100_000),
        )

    def spam(self) -> SpamSettings:
        """The spam filters (chatsvc.chat.spam); the blocklist file is read and checked here."""
        action = self.text("CHATSVC_SPAM_BLOCKLIST_ACTION", "reject").lower()
        if action not in {"reject", "mask"}:
            raise SettingsError("CHATSVC_SPAM_BLOCKLIST_ACTION", f"expected reject or mask, got {action!r}")
        path = self.readable_file("CHATSVC_SPAM_BLOCKLIST_FILE")
        try:
            blocklist = load_blocklist(path) if path is not None else ()
        except (OSError, ValueError) as exc:
            raise SettingsError("CHATSVC_SPAM_BLOCKLIST_FILE", str(exc)) from None
        return SpamSettings(
            duplicate_window_seconds=self.integer(
                "CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS", 60, minimum=0, maximum=86_400
            ),
            duplicate_min_chars=self.integer(
                "CHATSVC_SPAM_DUPLICATE_MIN_CHARS", 8, minimum=1, maximum=10_000
            ),
            max_links=self.integer("CHATSVC_SPAM_MAX_LINKS", 3, minimum=0, maximum=1000),
            link_min_token_age_minutes=self.integer(
                "CHATSVC_SPAM_LINK_MIN_TOKEN_AGE_MINUTES", 0, minimum=0, maximum=525_600
            ),
            max_mentions=self.integer("CHATSVC_SPAM_MAX_MENTIONS", 5, minimum=0, maximum=100),
            blocklist=blocklist,
            blocklist_action=action,
            tracked_users=self.integer("CHATSVC_SPAM_TRACKED_USERS", 10_000, minimum=1, maximum=10_000_000),
        )

    def modes(self) -> ModeSettings:
        pattern = self.text("CHATSVC_CASHTAG_PATTERN", CASHTAG_PATTERN)
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise SettingsError("CHATSVC_CASHTAG_PATTERN", f"not a regular expression: {exc}") from None
        if len(pattern) > 500 or compiled.groups > 1:
            raise SettingsError("CHATSVC_CASHTAG_PATTERN", "at most 500 characters and one capturing group")
        return ModeSettings(
            slow_mode_max_seconds=self.integer("CHATSVC_SLOW_MODE_MAX", 3600, minimum=1, maximum=86_400),
            surge_rate=self.number("CHATSVC_SURGE_RATE", 10.0, minimum=0.0),
            surge_window_seconds=self.integer("CHATSVC_SURGE_WINDOW", 10, minimum=1, maximum=3600),
            surge_slow_mode_seconds=self.integer("CHATSVC_SURGE_SLOW_MODE", 5, minimum=1, maximum=3600),
            cashtag_pattern=pattern,
            tickers_per_message=self.integer("CHATSVC_MAX_TICKERS", 10, minimum=0, maximum=100),
            sentiment_event_ms=self.integer("CHATSVC_SENTIMENT_EVENT_MS", 3000, minimum=500, maximum=60_000),
        )

    def store(self, environment: str) -> str:
        """``CHATSVC_STORE``; defaults to ``scylla`` when contact points are set, else ``sqlite``."""
        has_scylla = bool(self.items("SCYLLA_CONTACT_POINTS"))
        store = (self.raw("CHATSVC_STORE") or ("scylla" if has_scylla else "sqlite")).lower()
        if store not in STORE_BACKENDS:
            raise SettingsError(
                "CHATSVC_STORE", f"expected one of {', '.join(STORE_BACKENDS)}, got {store!r}"
            )
        if (store == "scylla") != has_scylla:
            problem = "conflicts with" if has_scylla else "needs"
            raise SettingsError("CHATSVC_STORE", f"CHATSVC_STORE={store} {problem} SCYLLA_CONTACT_POINTS")
        if store == "memory" and environment == "production":
            raise SettingsError(
                "CHATSVC_STORE", "memory keeps no history across restarts; not for production"
            )
        return store

    def kafka(self) -> KafkaSettings | None:
        brokers = self.items("KAFKA_BROKERS")
        tls = self.tls_files(
            "KAFKA_SSL_CA_CERT", "KAFKA_SSL_CLIENT_CERT", "KAFKA_SSL_CLIENT_KEY", "KAFKA_SSL_KEY_PASSWORD"
        )
        mechanism = self.optional("KAFKA_SASL_MECHANISM")
        notify_topic = self.notify_topic()
        if not brokers:
            if tls or mechanism:
                raise SettingsError(
                    "KAFKA_BROKERS", "Kafka TLS or SASL is configured but KAFKA_BROKERS is not set"
                )
            if notify_topic is not None:
                raise SettingsError("CHATSVC_NOTIFY_TOPIC", "needs Kafka: set KAFKA_BROKERS")
            return None
        for broker in brokers:
            _host, _, port = broker.rpartition(":")
            if not _host or not port.isdigit():
                raise SettingsError("KAFKA_BROKERS", f"expected host:port[,host:port], got {broker!r}")
        username = password = None
        if mechanism is not None:
            mechanism = mechanism.upper()
            if mechanism not in SASL_MECHANISMS:
                raise SettingsError(
                    "KAFKA_SASL_MECHANISM", f"expected one of {', '.join(sorted(SASL_MECHANISMS))}"
                )
            username = self.optional("KAFKA_SASL_USERNAME")
            password = self.secret("KAFKA_SASL_PASSWORD")
            if username is None:
                raise SettingsError("KAFKA_SASL_USERNAME", f"required with KAFKA_SASL_MECHANISM={mechanism}")
            if password is None:
                raise SettingsError("KAFKA_SASL_PASSWORD", f"required with KAFKA_SASL_MECHANISM={mechanism}")
        topic = self.text("KAFKA_TOPIC", "chatsvc.fanout")
        # A deployment that names its fan-out topic gets its own events topic next to it.
        events_topic = self.text(
            "KAFKA_EVENTS_TOPIC", f"{topic}.events" if self.raw("KAFKA_TOPIC") else "chatsvc.events"
        )
        if events_topic == topic:
            raise SettingsError("KAFKA_EVENTS_TOPIC", "must differ from KAFKA_TOPIC")
        return KafkaSettings(
            brokers=brokers,
            topic=topic,
            events_topic=events_topic,
            events_min_retention_hours=self.integer(
                "KAFKA_EVENTS_MIN_RETENTION_HOURS", 168, minimum=0, maximum=87_600
            ),
            events_routing=self.boolean("KAFKA_EVENTS_ROUTING", False),
            client_id=self.text("KAFKA_CLIENT_ID", "chatsvc"),
            connect_retries=self.integer("KAFKA_CONNECT_RETRIES", 5, minimum=1, maximum=100),
            retry_backoff_ms=self.integer("KAFKA_RETRY_BACKOFF_MS", 500, minimum=1),
            fetch_max_wait_ms=self.integer("KAFKA_FETCH_MAX_WAIT_MS", 500, minimum=0, maximum=60_000),
            fetch_min_bytes=self.integer("KAFKA_FETCH_MIN_BYTES", 1, minimum=1, maximum=64 * 1024 * 1024),
            fetch_adaptive=not (self.raw("KAFKA_FETCH_MIN_BYTES") or self.raw("KAFKA_FETCH_MAX_WAIT_MS")),
            tls=tls,
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password=password,
            notify_topic=notify_topic,
            **self.notify_relay(),
        )

    def notify_relay(self) -> dict[str, int]:
        """CHATSVC_NOTIFY_RETRY_WINDOW_MS and CHATSVC_NOTIFY_LEASE_SECONDS: a produce (the
        window plus a 2 s margin) must end before the lease it started under can lapse."""
        window = self.integer("CHATSVC_NOTIFY_RETRY_WINDOW_MS", 5_000, minimum=500, maximum=300_000)
        lease = self.integer("CHATSVC_NOTIFY_LEASE_SECONDS", 15, minimum=2, maximum=600)
        if lease * 1000 < window + 3_000:
            raise SettingsError(
                "CHATSVC_NOTIFY_LEASE_SECONDS",
                f"must be at least CHATSVC_NOTIFY_RETRY_WINDOW_MS + 3 s ({(window + 3_000 + 999) // 1000} s)",
            )
        return {"notify_retry_window_ms": window, "notify_lease_seconds": lease}

    def notify_topic(self) -> str | None:
        """CHATSVC_NOTIFY_TOPIC, a legal Kafka topic name other than the fan-out topic's."""
        topic = self.optional("CHATSVC_NOTIFY_TOPIC")
        if topic is None:
            return None
        if (
            len(topic) > 249
            or topic in {".", ".."}
            or not all(c.isascii() and (c.isalnum() or c in "._-") for c in topic)
        ):
            raise SettingsError(
                "CHATSVC_NOTIFY_TOPIC", f"expected a Kafka topic name ([A-Za-z0-9._-]), got {topic!r}"
            )
        if topic == self.text("KAFKA_TOPIC", "chatsvc.fanout"):
            raise SettingsError("CHATSVC_NOTIFY_TOPIC", "must differ from KAFKA_TOPIC (the fan-out topic)")
        return topic

    def scylla(self) -> ScyllaSettings | None:
        points = self.items("SCYLLA_CONTACT_POINTS")
        tls = self.scylla_tls()
        if not points:
            if tls:
                raise SettingsError(
                    "SCYLLA_CONTACT_POINTS", "ScyllaDB TLS is configured but no contact points"
                )
            return None
        consistency = self.text("SCYLLA_CONSISTENCY", "LOCAL_QUORUM").upper()
        if consistency not in CONSISTENCY_LEVELS:
            raise SettingsError(
                "SCYLLA_CONSISTENCY", f"expected one of {', '.join(sorted(CONSISTENCY_LEVELS))}"
            )
        keyspace = self.text("SCYLLA_KEYSPACE", "chatsvc")
        if not keyspace.replace("_", "").isalnum() or len(keyspace) > 48:
            raise SettingsError("SCYLLA_KEYSPACE", f"expected letters, digits and _, got {keyspace!r}")
        replication = self.text("SCYLLA_REPLICATION", "SimpleStrategy:1")
        _validate_replication(replication)
        username = self.optional("SCYLLA_USERNAME")
        password = self.secret("SCYLLA_PASSWORD")
        if (username is None) != (password is None):
            raise SettingsError(
                "SCYLLA_PASSWORD" if password is None else "SCYLLA_USERNAME",
                "SCYLLA_USERNAME and SCYLLA_PASSWORD must be set together",
            )
        return ScyllaSettings(
            contact_points=points,
            port=self.integer("SCYLLA_PORT", 9042, minimum=1, maximum=65535),
            keyspace=keyspace,
            local_dc=self.optional("SCYLLA_LOCAL_DC"),
            username=username,
            password=password,
            replication=replication,
            consistency=consistency,
            tls=tls,
            request_timeout_seconds=self.number("SCYLLA_REQUEST_TIMEOUT", 5.0, minimum=0.1),
            max_in_flight=self.integer("SCYLLA_MAX_IN_FLIGHT", 256, minimum=1),
        )

    def scylla_tls(self) -> TlsFiles | None:
        """CA alone → server-verified TLS; CA plus cert and key → mutual TLS; cert without CA → error."""
        ca = self.readable_file("SCYLLA_SSL_CA_CERT")
        cert = self.raw("SCYLLA_SSL_CLIENT_CERT")
        key = self.raw("SCYLLA_SSL_CLIENT_KEY")
        if ca is None:
            if cert or key:
                raise SettingsError("SCYLLA_SSL_CA_CERT", "a client certificate needs SCYLLA_SSL_CA_CERT too")
            return None
        if (cert is None) != (key is None):
            raise SettingsError(
                "SCYLLA_SSL_CLIENT_KEY" if key is None else "SCYLLA_SSL_CLIENT_CERT",
                "SCYLLA_SSL_CLIENT_CERT and SCYLLA_SSL_CLIENT_KEY must be set together",
            )
        return TlsFiles(
            ca,
            self.readable_file("SCYLLA_SSL_CLIENT_CERT"),
            self.readable_file("SCYLLA_SSL_CLIENT_KEY"),
        )

    def grpc(self) -> GrpcSettings:
        cert = self.readable_file("CHATSVC_GRPC_TLS_CERT")
        key = self.readable_file("CHATSVC_GRPC_TLS_KEY")
        client_ca = self.readable_file("CHATSVC_GRPC_TLS_CLIENT_CA")
        if (cert is None) != (key is None):
            raise SettingsError(
                "CHATSVC_GRPC_TLS_KEY" if key is None else "CHATSVC_GRPC_TLS_CERT",
                "CHATSVC_GRPC_TLS_CERT and CHATSVC_GRPC_TLS_KEY must be set together",
            )
        if client_ca is not None and cert is None:
            raise SettingsError(
                "CHATSVC_GRPC_TLS_CERT", "CHATSVC_GRPC_TLS_CLIENT_CA needs a server certificate"
            )
        return GrpcSettings(
            host=self.text("CHATSVC_GRPC_HOST", self.text("CHATSVC_HOST", "127.0.0.1")),
            port=self.integer("CHATSVC_GRPC_PORT", 50051, minimum=0, maximum=65535),
            enabled=self.boolean("CHATSVC_GRPC_ENABLED", True),
            tls_cert=cert,
            tls_key=key,
            tls_client_ca=client_ca,
            grace_seconds=self.number("CHATSVC_GRPC_GRACE", 5.0),
        )


def _validate_jwks_url(url: str, environment: str) -> None:
    """https, or http to a loopback host in development (a local test provider)."""
    parsed = urlsplit(url)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if not parsed.hostname or port == -1 or parsed.username or parsed.password:
        raise SettingsError("CHATSVC_JWT_JWKS_URL", f"expected https://host[:port]/path, got {url!r}")
    if parsed.scheme == "https":
        return
    loopback = parsed.hostname in {"localhost", "127.0.0.1", "::1"}
    if parsed.scheme == "http" and loopback and environment == "development":
        return
    raise SettingsError(
        "CHATSVC_JWT_JWKS_URL",
        f"must be an https:// URL (plain http only to a loopback host in development), got {url!r}",
    )


def _validate_replication(value: str) -> None:
    """``SimpleStrategy:N`` or ``NetworkTopologyStrategy:dc1=3,dc2=3``."""
    strategy, _, spec = value.partition(":")
    try:
        if strategy == "SimpleStrategy" and int(spec) >= 1:
            return
        if strategy == "NetworkTopologyStrategy" and spec:
            for part in spec.split(","):
                dc, _, factor = part.partition("=")
                if not dc or int(factor) < 1:
                    raise ValueError(part)
            return
    except ValueError:
        pass
    raise SettingsError(
        "SCYLLA_REPLICATION",
        f"expected SimpleStrategy:N or NetworkTopologyStrategy:dc=N[,dc=N], got {value!r}",
    )


def _dev_secret(data_dir: Path) -> str:
    """A development HMAC secret kept in the data dir, so tokens survive a restart."""
    path = data_dir / "dev-jwt-secret"
    try:
        if path.is_file():
            value = path.read_text().strip()
            if len(value) >= 32:
                return value
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value
    except OSError as exc:
        raise SettingsError(
            "CHATSVC_DATA_DIR", f"cannot keep the dev JWT secret in {data_dir}: {exc}"
        ) from None
