"""The root :class:`Settings` object and the reading of the process-wide variables: the
environment, listeners (HTTP, metrics, gRPC), TLS, CORS, logs, the Admin UI, fast paths and
big-room thresholds. :func:`read_settings` calls each ``read_*`` module for its section.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from chatsvc.settings.model import (
    FAST_PATHS,
    GrpcSettings,
    JwtSettings,
    KafkaSettings,
    Limits,
    ModeSettings,
    ScyllaSettings,
    Secret,
    SpamSettings,
)
from chatsvc.settings.read_auth import read_jwt
from chatsvc.settings.read_kafka import read_kafka
from chatsvc.settings.read_limits import read_limits, read_modes, read_spam
from chatsvc.settings.read_store import read_scylla, read_store
from chatsvc.settings.reader import EnvReader, SettingsError, together


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
        return read_settings(EnvReader(os.environ if env is None else env))


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


def read_settings(env: EnvReader) -> Settings:
    """Every variable, section by section; the first bad one raises :class:`SettingsError`
    (the order of the checks below decides which one a configuration with several is told of)."""
    environment = env.text("CHATSVC_ENV", "development").lower()
    if environment not in {"development", "production"}:
        raise SettingsError("CHATSVC_ENV", f"expected development or production, got {environment!r}")
    data_dir = Path(env.text("CHATSVC_DATA_DIR", "data"))
    log_level = env.text("CHATSVC_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("CHATSVC_LOG_LEVEL", f"expected DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    log_format = env.text("CHATSVC_LOG_FORMAT", "text").lower()
    if log_format not in {"text", "json"}:
        raise SettingsError("CHATSVC_LOG_FORMAT", f"expected text or json, got {log_format!r}")

    tls_cert = env.readable_file("CHATSVC_TLS_CERT")
    tls_key = env.readable_file("CHATSVC_TLS_KEY")
    together("CHATSVC_TLS_CERT", tls_cert, "CHATSVC_TLS_KEY", tls_key)

    for origin in (origins := env.items("CHATSVC_CORS_ORIGINS")):
        if origin == "*":
            continue
        if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
            raise SettingsError(
                "CHATSVC_CORS_ORIGINS",
                f"each origin must look like https://host[:port] (no path), got {origin!r}",
            )

    ping_interval = env.number("CHATSVC_PING_INTERVAL", 25.0, minimum=1.0)
    ping_timeout = env.number("CHATSVC_PING_TIMEOUT", 20.0, minimum=1.0)

    admin_user = env.optional("CHATSVC_ADMIN_UI_USERNAME")
    admin_password = env.secret("CHATSVC_ADMIN_UI_PASSWORD")
    together(
        "CHATSVC_ADMIN_UI_USERNAME",
        admin_user,
        "CHATSVC_ADMIN_UI_PASSWORD",
        admin_password,
        "the Admin UI needs both CHATSVC_ADMIN_UI_USERNAME and CHATSVC_ADMIN_UI_PASSWORD",
    )

    return Settings(
        host=env.text("CHATSVC_HOST", "127.0.0.1"),
        port=env.integer("CHATSVC_PORT", 8080, minimum=0, maximum=65535),
        metrics_port=_metrics_port(env, environment),
        data_dir=data_dir,
        environment=environment,
        log_level=log_level,
        log_format=log_format,
        cors_origins=origins,
        trusted_proxies=env.networks("CHATSVC_TRUSTED_PROXIES"),
        tls_cert=tls_cert,
        tls_key=tls_key,
        jwt=read_jwt(env, environment, data_dir),
        limits=read_limits(env),
        spam=read_spam(env),
        modes=read_modes(env),
        ping_interval_seconds=ping_interval,
        ping_timeout_seconds=ping_timeout,
        shutdown_timeout_seconds=env.number("CHATSVC_SHUTDOWN_TIMEOUT", 10.0, minimum=0.5),
        admin_ui_username=admin_user,
        admin_ui_password=admin_password,
        web_app=env.boolean("CHATSVC_WEB_APP", environment != "production"),
        replica_id=env.text("CHATSVC_REPLICA_ID", env.text("HOSTNAME", "") or secrets.token_hex(4)),
        auto_migrate=env.boolean("CHATSVC_AUTO_MIGRATE", True),
        store=read_store(env, environment),
        ws_compression=env.boolean("CHATSVC_WS_COMPRESSION", False),
        fast_paths_off=_fast_paths_off(env),
        kafka=read_kafka(env),
        scylla=read_scylla(env),
        grpc=_grpc(env),
        cluster_heartbeat_seconds=env.number("CHATSVC_CLUSTER_HEARTBEAT", 2.0, minimum=0.1),
        **_big_rooms(env),
    )


def _big_rooms(env: EnvReader) -> dict[str, int]:
    """The thresholds and window of chatsvc.chat.coalesce."""
    big = env.integer("CHATSVC_BIG_ROOM_MEMBERS", 100, minimum=1)
    typing_off = env.integer("CHATSVC_TYPING_OFF_MEMBERS", max(1000, big), minimum=1)
    if typing_off < big:
        raise SettingsError("CHATSVC_TYPING_OFF_MEMBERS", "must be at least CHATSVC_BIG_ROOM_MEMBERS")
    return {
        "big_room_members": big,
        "presence_coalesce_ms": env.integer("CHATSVC_PRESENCE_COALESCE_MS", 1500, minimum=50, maximum=60_000),
        "typing_off_members": typing_off,
    }


def _fast_paths_off(env: EnvReader) -> frozenset[str]:
    """``CHATSVC_FAST_PATHS=false`` turns every fast path off; ``CHATSVC_FAST_PATHS_OFF``
    names some of them (the benchmark's ablation)."""
    if not env.boolean("CHATSVC_FAST_PATHS", True):
        return frozenset(FAST_PATHS)
    names = frozenset(env.items("CHATSVC_FAST_PATHS_OFF"))
    unknown = sorted(names - set(FAST_PATHS))
    if unknown:
        raise SettingsError(
            "CHATSVC_FAST_PATHS_OFF", f"unknown fast paths {unknown}; known: {', '.join(FAST_PATHS)}"
        )
    return names


def _metrics_port(env: EnvReader, environment: str) -> int | None:
    """``CHATSVC_METRICS_PORT``: 9090 in production, where the public listener (the
    Ingress routes ``/`` to it) must not serve ``/metrics``; unset in development
    (``/metrics`` on ``CHATSVC_PORT``)."""
    production = environment == "production"
    port = env.integer("CHATSVC_METRICS_PORT", 9090 if production else 0, minimum=0, maximum=65535)
    if port == 0 and production:
        raise SettingsError("CHATSVC_METRICS_PORT", "production serves /metrics on its own port, not 0")
    if port != 0 and port in {
        env.integer("CHATSVC_PORT", 8080),
        env.integer("CHATSVC_GRPC_PORT", 50051),
    }:
        raise SettingsError("CHATSVC_METRICS_PORT", "must differ from CHATSVC_PORT and CHATSVC_GRPC_PORT")
    return port or None


def _grpc(env: EnvReader) -> GrpcSettings:
    """The gRPC admin listener (``CHATSVC_GRPC_*``): its TLS files come as a cert and key pair."""
    cert = env.readable_file("CHATSVC_GRPC_TLS_CERT")
    key = env.readable_file("CHATSVC_GRPC_TLS_KEY")
    client_ca = env.readable_file("CHATSVC_GRPC_TLS_CLIENT_CA")
    together("CHATSVC_GRPC_TLS_CERT", cert, "CHATSVC_GRPC_TLS_KEY", key)
    if client_ca is not None and cert is None:
        raise SettingsError("CHATSVC_GRPC_TLS_CERT", "CHATSVC_GRPC_TLS_CLIENT_CA needs a server certificate")
    return GrpcSettings(
        host=env.text("CHATSVC_GRPC_HOST", env.text("CHATSVC_HOST", "127.0.0.1")),
        port=env.integer("CHATSVC_GRPC_PORT", 50051, minimum=0, maximum=65535),
        enabled=env.boolean("CHATSVC_GRPC_ENABLED", True),
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=client_ca,
        grace_seconds=env.number("CHATSVC_GRPC_GRACE", 5.0),
    )
