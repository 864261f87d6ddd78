"""Reading Kafka (``KAFKA_*``): brokers, topics, fetch tuning, TLS and SASL, and the offline
notification topic and its relay (``CHATSVC_NOTIFY_*``), which need Kafka."""

from __future__ import annotations

from chatsvc.settings.model import SASL_MECHANISMS, KafkaSettings
from chatsvc.settings.reader import EnvReader, SettingsError


def read_kafka(env: EnvReader) -> KafkaSettings | None:
    """``KAFKA_*`` and ``CHATSVC_NOTIFY_*``; None without ``KAFKA_BROKERS`` (then TLS, SASL or a
    notification topic is an error)."""
    brokers = env.items("KAFKA_BROKERS")
    tls = env.tls_files(
        "KAFKA_SSL_CA_CERT", "KAFKA_SSL_CLIENT_CERT", "KAFKA_SSL_CLIENT_KEY", "KAFKA_SSL_KEY_PASSWORD"
    )
    mechanism = env.optional("KAFKA_SASL_MECHANISM")
    notify_topic = _notify_topic(env)
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
        username = env.optional("KAFKA_SASL_USERNAME")
        password = env.secret("KAFKA_SASL_PASSWORD")
        if username is None:
            raise SettingsError("KAFKA_SASL_USERNAME", f"required with KAFKA_SASL_MECHANISM={mechanism}")
        if password is None:
            raise SettingsError("KAFKA_SASL_PASSWORD", f"required with KAFKA_SASL_MECHANISM={mechanism}")
    topic = env.text("KAFKA_TOPIC", "chatsvc.fanout")
    # A deployment that names its fan-out topic gets its own events topic next to it.
    events_topic = env.text(
        "KAFKA_EVENTS_TOPIC", f"{topic}.events" if env.raw("KAFKA_TOPIC") else "chatsvc.events"
    )
    if events_topic == topic:
        raise SettingsError("KAFKA_EVENTS_TOPIC", "must differ from KAFKA_TOPIC")
    return KafkaSettings(
        brokers=brokers,
        topic=topic,
        events_topic=events_topic,
        events_min_retention_hours=env.integer(
            "KAFKA_EVENTS_MIN_RETENTION_HOURS", 168, minimum=0, maximum=87_600
        ),
        events_routing=env.boolean("KAFKA_EVENTS_ROUTING", False),
        client_id=env.text("KAFKA_CLIENT_ID", "chatsvc"),
        connect_retries=env.integer("KAFKA_CONNECT_RETRIES", 5, minimum=1, maximum=100),
        retry_backoff_ms=env.integer("KAFKA_RETRY_BACKOFF_MS", 500, minimum=1),
        fetch_max_wait_ms=env.integer("KAFKA_FETCH_MAX_WAIT_MS", 500, minimum=0, maximum=60_000),
        fetch_min_bytes=env.integer("KAFKA_FETCH_MIN_BYTES", 1, minimum=1, maximum=64 * 1024 * 1024),
        fetch_adaptive=not (env.raw("KAFKA_FETCH_MIN_BYTES") or env.raw("KAFKA_FETCH_MAX_WAIT_MS")),
        tls=tls,
        sasl_mechanism=mechanism,
        sasl_username=username,
        sasl_password=password,
        notify_topic=notify_topic,
        **_notify_relay(env),
    )


def _notify_relay(env: EnvReader) -> dict[str, int]:
    """CHATSVC_NOTIFY_RETRY_WINDOW_MS and CHATSVC_NOTIFY_LEASE_SECONDS: a produce (the
    window plus a 2 s margin) must end before the lease it started under can lapse."""
    window = env.integer("CHATSVC_NOTIFY_RETRY_WINDOW_MS", 5_000, minimum=500, maximum=300_000)
    lease = env.integer("CHATSVC_NOTIFY_LEASE_SECONDS", 15, minimum=2, maximum=600)
    if lease * 1000 < window + 3_000:
        raise SettingsError(
            "CHATSVC_NOTIFY_LEASE_SECONDS",
            f"must be at least CHATSVC_NOTIFY_RETRY_WINDOW_MS + 3 s ({(window + 3_000 + 999) // 1000} s)",
        )
    return {"notify_retry_window_ms": window, "notify_lease_seconds": lease}


def _notify_topic(env: EnvReader) -> str | None:
    """CHATSVC_NOTIFY_TOPIC, a legal Kafka topic name other than the fan-out topic's."""
    topic = env.optional("CHATSVC_NOTIFY_TOPIC")
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
    if topic == env.text("KAFKA_TOPIC", "chatsvc.fanout"):
        raise SettingsError("CHATSVC_NOTIFY_TOPIC", "must differ from KAFKA_TOPIC (the fan-out topic)")
    return topic
