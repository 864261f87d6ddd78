"""Reading the history store: the backend (``CHATSVC_STORE``) and ScyllaDB (``SCYLLA_*``:
contact points, keyspace and replication, consistency, credentials, TLS)."""

from __future__ import annotations

from chatsvc.settings.model import CONSISTENCY_LEVELS, STORE_BACKENDS, ScyllaSettings, TlsFiles
from chatsvc.settings.reader import EnvReader, SettingsError, together


def read_store(env: EnvReader, environment: str) -> str:
    """``CHATSVC_STORE``; defaults to ``scylla`` when contact points are set, else ``sqlite``."""
    has_scylla = bool(env.items("SCYLLA_CONTACT_POINTS"))
    store = (env.raw("CHATSVC_STORE") or ("scylla" if has_scylla else "sqlite")).lower()
    if store not in STORE_BACKENDS:
        raise SettingsError("CHATSVC_STORE", f"expected one of {', '.join(STORE_BACKENDS)}, got {store!r}")
    if (store == "scylla") != has_scylla:
        problem = "conflicts with" if has_scylla else "needs"
        raise SettingsError("CHATSVC_STORE", f"CHATSVC_STORE={store} {problem} SCYLLA_CONTACT_POINTS")
    if store == "memory" and environment == "production":
        raise SettingsError("CHATSVC_STORE", "memory keeps no history across restarts; not for production")
    return store


def read_scylla(env: EnvReader) -> ScyllaSettings | None:
    """``SCYLLA_*``; None without ``SCYLLA_CONTACT_POINTS`` (then TLS is an error)."""
    points = env.items("SCYLLA_CONTACT_POINTS")
    tls = _scylla_tls(env)
    if not points:
        if tls:
            raise SettingsError("SCYLLA_CONTACT_POINTS", "ScyllaDB TLS is configured but no contact points")
        return None
    consistency = env.text("SCYLLA_CONSISTENCY", "LOCAL_QUORUM").upper()
    if consistency not in CONSISTENCY_LEVELS:
        raise SettingsError("SCYLLA_CONSISTENCY", f"expected one of {', '.join(sorted(CONSISTENCY_LEVELS))}")
    keyspace = env.text("SCYLLA_KEYSPACE", "chatsvc")
    if not keyspace.replace("_", "").isalnum() or len(keyspace) > 48:
        raise SettingsError("SCYLLA_KEYSPACE", f"expected letters, digits and _, got {keyspace!r}")
    replication = env.text("SCYLLA_REPLICATION", "SimpleStrategy:1")
    _validate_replication(replication)
    username = env.optional("SCYLLA_USERNAME")
    password = env.secret("SCYLLA_PASSWORD")
    together("SCYLLA_USERNAME", username, "SCYLLA_PASSWORD", password)
    return ScyllaSettings(
        contact_points=points,
        port=env.integer("SCYLLA_PORT", 9042, minimum=1, maximum=65535),
        keyspace=keyspace,
        local_dc=env.optional("SCYLLA_LOCAL_DC"),
        username=username,
        password=password,
        replication=replication,
        consistency=consistency,
        tls=tls,
        request_timeout_seconds=env.number("SCYLLA_REQUEST_TIMEOUT", 5.0, minimum=0.1),
        max_in_flight=env.integer("SCYLLA_MAX_IN_FLIGHT", 256, minimum=1),
    )


def _scylla_tls(env: EnvReader) -> TlsFiles | None:
    """CA alone → server-verified TLS; CA plus cert and key → mutual TLS; cert without CA → error."""
    ca = env.readable_file("SCYLLA_SSL_CA_CERT")
    cert = env.raw("SCYLLA_SSL_CLIENT_CERT")
    key = env.raw("SCYLLA_SSL_CLIENT_KEY")
    if ca is None:
        if cert or key:
            raise SettingsError("SCYLLA_SSL_CA_CERT", "a client certificate needs SCYLLA_SSL_CA_CERT too")
        return None
    together("SCYLLA_SSL_CLIENT_CERT", cert, "SCYLLA_SSL_CLIENT_KEY", key)
    return TlsFiles(
        ca,
        env.readable_file("SCYLLA_SSL_CLIENT_CERT"),
        env.readable_file("SCYLLA_SSL_CLIENT_KEY"),
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
