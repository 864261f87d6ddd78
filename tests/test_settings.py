"""Settings.from_env: defaults, validation naming the variable, masked secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chatsvc.settings import Secret, Settings, SettingsError
from tests.support.servers import TEST_JWT_SECRET

SECRET_VALUES = {
    "CHATSVC_JWT_SECRET": TEST_JWT_SECRET,
    "CHATSVC_ADMIN_UI_PASSWORD": "admin-ui-password-value",
    "KAFKA_SASL_PASSWORD": "kafka-sasl-password-value",
    "SCYLLA_PASSWORD": "scylla-password-value",
}


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    return {"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, "CHATSVC_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "some.pem"
    path.write_text("-----BEGIN NOTHING-----\n")
    return str(path)


def error_for(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    return info.value


def test_defaults(base: dict[str, str]) -> None:
    s = Settings.from_env(base)
    assert (s.host, s.port, s.environment, s.log_level) == ("127.0.0.1", 8080, "development", "INFO")
    assert s.cors_origins == ()
    assert s.tls_cert is None and s.tls_key is None
    assert s.jwt.algorithms == ("HS256",)
    assert s.jwt.secret == Secret(TEST_JWT_SECRET)
    assert not s.jwt.dev_secret_generated
    assert (s.jwt.issuer, s.jwt.audience, s.jwt.leeway_seconds) == (None, None, 0.0)
    assert s.limits.message_bytes == 4096
    assert s.limits.rooms_per_connection == 50
    assert s.kafka is None and s.scylla is None
    assert s.sqlite_path == Path(base["CHATSVC_DATA_DIR"]) / "chatsvc.sqlite3"
    assert not s.is_production
    assert Settings.from_env(base).replica_id  # always has one


def test_values_are_parsed(base: dict[str, str], pem: str) -> None:
    s = Settings.from_env(
        {
            **base,
            "CHATSVC_HOST": "0.0.0.0",
            "CHATSVC_PORT": " 9000 ",
            "CHATSVC_CORS_ORIGINS": "https://app.example, http://localhost:3000,,",
            "CHATSVC_TLS_CERT": pem,
            "CHATSVC_TLS_KEY": pem,
            "CHATSVC_JWT_ALGORITHMS": "HS256,HS512",
            "CHATSVC_JWT_ISSUER": "https://auth.example",
            "CHATSVC_JWT_AUDIENCE": "chatsvc",
            "CHATSVC_JWT_LEEWAY": "2.5",
            "CHATSVC_MAX_MESSAGE_BYTES": "100",
            "CHATSVC_RATE_LIMIT_PER_SECOND": "0.5",
            "CHATSVC_RATE_LIMIT_BURST": "3",
            "CHATSVC_MAX_ROOMS_PER_CONNECTION": "7",
            "CHATSVC_LOG_LEVEL": "debug",
            "CHATSVC_ENV": "Production",
            "CHATSVC_AUTO_MIGRATE": "no",
        }
    )
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.cors_origins == ("https://app.example", "http://localhost:3000")
    assert s.tls_cert == Path(pem)
    assert s.jwt.algorithms == ("HS256", "HS512")
    assert (s.jwt.issuer, s.jwt.audience, s.jwt.leeway_seconds) == ("https://auth.example", "chatsvc", 2.5)
    assert (s.limits.message_bytes, s.limits.messages_per_second, s.limits.burst) == (100, 0.5, 3)
    assert s.limits.rooms_per_connection == 7
    assert s.log_level == "DEBUG"
    assert s.is_production
    assert s.auto_migrate is False


def test_blank_means_unset(base: dict[str, str]) -> None:
    s = Settings.from_env({**base, "CHATSVC_PORT": "  ", "CHATSVC_CORS_ORIGINS": "", "CHATSVC_TLS_CERT": ""})
    assert s.port == 8080 and s.cors_origins == () and s.tls_cert is None


def test_explicit_star_origin_is_allowed(base: dict[str, str]) -> None:
    assert Settings.from_env({**base, "CHATSVC_CORS_ORIGINS": "*"}).cors_origins == ("*",)


BAD_VALUES = [
    ("CHATSVC_PORT", "http"),
    ("CHATSVC_PORT", "70000"),
    ("CHATSVC_PORT", "-1"),
    ("CHATSVC_ENV", "staging"),
    ("CHATSVC_LOG_LEVEL", "TRACE"),
    ("CHATSVC_CORS_ORIGINS", "app.example"),
    ("CHATSVC_CORS_ORIGINS", "https://app.example/"),
    ("CHATSVC_CORS_ORIGINS", "https://ok.example,ftp://x"),
    ("CHATSVC_PING_INTERVAL", "0.5"),
    ("CHATSVC_PING_TIMEOUT", "soon"),
    ("CHATSVC_SHUTDOWN_TIMEOUT", "0"),
    ("CHATSVC_SHUTDOWN_TIMEOUT", "nan"),
    ("CHATSVC_MAX_MESSAGE_BYTES", "0"),
    ("CHATSVC_MAX_MESSAGE_BYTES", "2000000"),
    ("CHATSVC_MAX_MESSAGE_BYTES", "4k"),
    ("CHATSVC_MAX_REACTION_KINDS", "0"),
    ("CHATSVC_MAX_REACTION_KINDS", "1001"),
    ("CHATSVC_MAX_MENTIONS", "-1"),
    ("CHATSVC_MAX_MENTIONS", "101"),
    ("CHATSVC_MAX_PINS", "0"),
    ("CHATSVC_RATE_LIMIT_PER_SECOND", "0"),
    ("CHATSVC_RATE_LIMIT_PER_SECOND", "nan"),
    ("CHATSVC_RATE_LIMIT_PER_SECOND", "inf"),
    ("CHATSVC_RATE_LIMIT_BURST", "0"),
    ("CHATSVC_RATE_LIMIT_BURST", "1.5"),
    ("CHATSVC_MAX_ROOMS_PER_CONNECTION", "0"),
    ("CHATSVC_MAX_HTTP_BUFFER_BYTES", "10"),
    ("CHATSVC_CATCHUP_MAX", "0"),
    ("CHATSVC_JWT_SECRET", "too-short"),
    ("CHATSVC_JWT_ALGORITHMS", "RS256"),
    ("CHATSVC_JWT_ALGORITHMS", "none"),
    ("CHATSVC_JWT_ALGORITHMS", "HS256,HS999"),
    ("CHATSVC_JWT_LEEWAY", "-1"),
    ("CHATSVC_JWT_LEEWAY", "a minute"),
    ("CHATSVC_JWT_PUBLIC_KEY", "/nonexistent/public.pem"),
    ("CHATSVC_TLS_CERT", "/nonexistent/cert.pem"),
    ("CHATSVC_AUTO_MIGRATE", "maybe"),
    ("CHATSVC_GRPC_PORT", "99999"),
    ("CHATSVC_GRPC_ENABLED", "sometimes"),
    ("KAFKA_BROKERS", "localhost"),
    ("KAFKA_BROKERS", "localhost:9092,:9093"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_every_bad_value_names_its_variable(base: dict[str, str], variable: str, value: str) -> None:
    error = error_for({**base, variable: value})
    assert error.variable == variable
    assert str(error).startswith(f"{variable}: ")


def test_bad_values_do_not_echo_secrets(base: dict[str, str]) -> None:
    error = error_for({**base, "CHATSVC_JWT_SECRET": "short-secret"})
    assert "short-secret" not in str(error)


def test_secret_and_public_key_together(base: dict[str, str], pem: str) -> None:
    assert error_for({**base, "CHATSVC_JWT_PUBLIC_KEY": pem}).variable == "CHATSVC_JWT_PUBLIC_KEY"


def test_public_key_defaults(tmp_path: Path, pem: str) -> None:
    s = Settings.from_env({"CHATSVC_JWT_PUBLIC_KEY": pem, "CHATSVC_DATA_DIR": str(tmp_path)})
    assert s.jwt.secret is None
    assert s.jwt.algorithms == ("RS256", "ES256")
    bad = error_for({"CHATSVC_JWT_PUBLIC_KEY": pem, "CHATSVC_JWT_ALGORITHMS": "HS256"})
    assert bad.variable == "CHATSVC_JWT_ALGORITHMS"


@pytest.mark.parametrize(
    ("present", "named"),
    [("CHATSVC_TLS_CERT", "CHATSVC_TLS_KEY"), ("CHATSVC_TLS_KEY", "CHATSVC_TLS_CERT")],
)
def test_partial_server_tls(base: dict[str, str], pem: str, present: str, named: str) -> None:
    error = error_for({**base, present: pem})
    assert error.variable == named
    assert "CHATSVC_TLS_CERT" in str(error) and "CHATSVC_TLS_KEY" in str(error)


def test_partial_kafka_tls(base: dict[str, str], pem: str) -> None:
    kafka = {**base, "KAFKA_BROKERS": "127.0.0.1:9092"}
    error = error_for({**kafka, "KAFKA_SSL_CA_CERT": pem, "KAFKA_SSL_CLIENT_CERT": pem})
    assert error.variable == "KAFKA_SSL_CLIENT_KEY"
    assert "missing: KAFKA_SSL_CLIENT_KEY" in str(error)
    assert error_for({**kafka, "KAFKA_SSL_KEY_PASSWORD": "pw"}).variable == "KAFKA_SSL_KEY_PASSWORD"
    assert error_for({**base, "KAFKA_SSL_CA_CERT": pem}).variable in {
        "KAFKA_BROKERS",
        "KAFKA_SSL_CLIENT_CERT",
    }
    full = Settings.from_env(
        {**kafka, "KAFKA_SSL_CA_CERT": pem, "KAFKA_SSL_CLIENT_CERT": pem, "KAFKA_SSL_CLIENT_KEY": pem}
    )
    assert full.kafka is not None and full.kafka.tls is not None


def test_partial_scylla_and_grpc_tls(base: dict[str, str], pem: str) -> None:
    scylla = {**base, "SCYLLA_CONTACT_POINTS": "127.0.0.1"}
    assert error_for({**scylla, "SCYLLA_SSL_CLIENT_CERT": pem}).variable == "SCYLLA_SSL_CA_CERT"
    partial = {**scylla, "SCYLLA_SSL_CA_CERT": pem, "SCYLLA_SSL_CLIENT_CERT": pem}
    assert error_for(partial).variable == "SCYLLA_SSL_CLIENT_KEY"
    assert error_for({**base, "CHATSVC_GRPC_TLS_CERT": pem}).variable == "CHATSVC_GRPC_TLS_KEY"
    assert error_for({**base, "CHATSVC_GRPC_TLS_CLIENT_CA": pem}).variable == "CHATSVC_GRPC_TLS_CERT"


def test_admin_ui_needs_both(base: dict[str, str]) -> None:
    assert error_for({**base, "CHATSVC_ADMIN_UI_USERNAME": "admin"}).variable == "CHATSVC_ADMIN_UI_PASSWORD"
    assert error_for({**base, "CHATSVC_ADMIN_UI_PASSWORD": "pw"}).variable == "CHATSVC_ADMIN_UI_USERNAME"


def test_production_without_a_jwt_key_refuses(tmp_path: Path) -> None:
    error = error_for({"CHATSVC_ENV": "production", "CHATSVC_DATA_DIR": str(tmp_path)})
    assert error.variable == "CHATSVC_JWT_SECRET"
    assert "CHATSVC_JWT_PUBLIC_KEY" in str(error)
    assert not (tmp_path / "dev-jwt-secret").exists()


def test_development_generates_and_keeps_a_dev_secret(tmp_path: Path) -> None:
    env = {"CHATSVC_DATA_DIR": str(tmp_path / "fresh")}
    first = Settings.from_env(env)
    assert first.jwt.dev_secret_generated
    assert first.jwt.secret is not None and len(first.jwt.secret.reveal()) >= 32
    path = tmp_path / "fresh" / "dev-jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings.from_env(env).jwt.secret == first.jwt.secret  # tokens survive a restart


def test_dev_secret_in_an_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert error_for({"CHATSVC_DATA_DIR": str(blocker / "data")}).variable == "CHATSVC_DATA_DIR"


def test_secrets_are_masked(base: dict[str, str]) -> None:
    env = {
        **base,
        "CHATSVC_ADMIN_UI_USERNAME": "admin",
        "CHATSVC_ADMIN_UI_PASSWORD": SECRET_VALUES["CHATSVC_ADMIN_UI_PASSWORD"],
        "KAFKA_BROKERS": "127.0.0.1:9092",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": SECRET_VALUES["KAFKA_SASL_PASSWORD"],
        "SCYLLA_CONTACT_POINTS": "127.0.0.1",
        "SCYLLA_USERNAME": "svc",
        "SCYLLA_PASSWORD": SECRET_VALUES["SCYLLA_PASSWORD"],
    }
    s = Settings.from_env(env)
    described = s.describe()
    for text in (repr(s), str(s), repr(described), str(s.jwt), repr(s.kafka), repr(s.scylla)):
        for value in SECRET_VALUES.values():
            assert value not in text
    assert described["admin_ui_password"] == "***"
    jwt = described["jwt"]
    assert isinstance(jwt, dict) and jwt["secret"] == "***"
    kafka = described["kafka"]
    assert isinstance(kafka, dict) and kafka["sasl_password"] == "***"
    assert s.kafka is not None and s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.reveal() == SECRET_VALUES["KAFKA_SASL_PASSWORD"]


def test_secret_type() -> None:
    secret = Secret("hunter2-hunter2")
    assert repr(secret) == str(secret) == "Secret('***')"
    assert f"{secret}" == "Secret('***')"
    assert secret.reveal() == "hunter2-hunter2"
    assert secret == Secret("hunter2-hunter2") and secret != Secret("other") and secret != "hunter2-hunter2"
    assert hash(secret) == hash(Secret("hunter2-hunter2"))


def test_settings_are_frozen(base: dict[str, str]) -> None:
    s = Settings.from_env(base)
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_recovery_settings(base: dict[str, str]) -> None:
    s = Settings.from_env(base)
    assert (s.limits.recovery_window_seconds, s.limits.recovery_max_replay) == (120, 500)
    s = Settings.from_env(base | {"CHATSVC_RECOVERY_WINDOW": "0", "CHATSVC_RECOVERY_MAX_REPLAY": "20"})
    assert (s.limits.recovery_window_seconds, s.limits.recovery_max_replay) == (0, 20)
    for name, value in [
        ("CHATSVC_RECOVERY_WINDOW", "-1"),
        ("CHATSVC_RECOVERY_WINDOW", "86401"),  # room events are kept two days
        ("CHATSVC_RECOVERY_WINDOW", "2m"),
        ("CHATSVC_RECOVERY_MAX_REPLAY", "0"),
        ("CHATSVC_RECOVERY_MAX_REPLAY", "10001"),
    ]:
        assert error_for(base | {name: value}).variable == name


def test_the_notify_topic_needs_kafka_and_a_topic_name_of_its_own(base: dict[str, str]) -> None:
    kafka = {**base, "KAFKA_BROKERS": "127.0.0.1:9092"}
    plain = Settings.from_env(kafka).kafka
    assert plain is not None and plain.notify_topic is None
    chosen = Settings.from_env({**kafka, "CHATSVC_NOTIFY_TOPIC": "st00ck.notify-1_a"}).kafka
    assert chosen is not None and chosen.notify_topic == "st00ck.notify-1_a"
    for env in (
        {**base, "CHATSVC_NOTIFY_TOPIC": "chatsvc.notify"},  # no Kafka
        {**kafka, "CHATSVC_NOTIFY_TOPIC": "has space"},
        {**kafka, "CHATSVC_NOTIFY_TOPIC": "x" * 250},
        {**kafka, "CHATSVC_NOTIFY_TOPIC": ".."},
        {**kafka, "CHATSVC_NOTIFY_TOPIC": "chatsvc.fanout"},  # the fan-out topic
        {**kafka, "KAFKA_TOPIC": "t", "CHATSVC_NOTIFY_TOPIC": "t"},
    ):
        assert error_for(env).variable == "CHATSVC_NOTIFY_TOPIC"


def test_the_notify_relay_window_and_lease_are_bounded_and_consistent(base: dict[str, str]) -> None:
    kafka = {**base, "KAFKA_BROKERS": "127.0.0.1:9092", "CHATSVC_NOTIFY_TOPIC": "n"}
    default = Settings.from_env(kafka).kafka
    assert default is not None
    assert (default.notify_retry_window_ms, default.notify_lease_seconds) == (5_000, 15)
    chosen = Settings.from_env(
        kafka | {"CHATSVC_NOTIFY_RETRY_WINDOW_MS": "1000", "CHATSVC_NOTIFY_LEASE_SECONDS": "4"}
    ).kafka
    assert chosen is not None
    assert (chosen.notify_retry_window_ms, chosen.notify_lease_seconds) == (1_000, 4)
    for name, value, extra in [
        ("CHATSVC_NOTIFY_RETRY_WINDOW_MS", "499", {}),
        ("CHATSVC_NOTIFY_RETRY_WINDOW_MS", "soon", {}),
        ("CHATSVC_NOTIFY_LEASE_SECONDS", "1", {}),
        ("CHATSVC_NOTIFY_LEASE_SECONDS", "601", {}),
        # A produce (window + 2 s) could outlive the lease it started under.
        ("CHATSVC_NOTIFY_LEASE_SECONDS", "7", {"CHATSVC_NOTIFY_RETRY_WINDOW_MS": "5000"}),
    ]:
        assert error_for(kafka | extra | {name: value}).variable == name


def test_kafka_fetch_batching_defaults_to_aiokafkas_and_is_bounded(base: dict[str, str]) -> None:
    kafka = {**base, "KAFKA_BROKERS": "127.0.0.1:9092"}
    settings = Settings.from_env(kafka).kafka
    assert settings is not None
    assert (settings.fetch_max_wait_ms, settings.fetch_min_bytes) == (500, 1)
    assert settings.fetch_adaptive  # neither set: chosen by the rate read
    for one in ({"KAFKA_FETCH_MAX_WAIT_MS": "500"}, {"KAFKA_FETCH_MIN_BYTES": "1"}):
        fixed = Settings.from_env({**kafka, **one}).kafka
        assert fixed is not None and not fixed.fetch_adaptive  # either one set: as configured
    tuned = Settings.from_env(
        {**kafka, "KAFKA_FETCH_MAX_WAIT_MS": "5", "KAFKA_FETCH_MIN_BYTES": "65536"}
    ).kafka
    assert tuned is not None
    assert (tuned.fetch_max_wait_ms, tuned.fetch_min_bytes) == (5, 65536)
    for variable, value in [
        ("KAFKA_FETCH_MAX_WAIT_MS", "-1"),
        ("KAFKA_FETCH_MAX_WAIT_MS", "soon"),
        ("KAFKA_FETCH_MIN_BYTES", "0"),
        ("KAFKA_FETCH_MIN_BYTES", str(65 * 1024 * 1024)),
    ]:
        assert error_for({**kafka, variable: value}).variable == variable


def test_big_room_settings(base: dict[str, str]) -> None:
    s = Settings.from_env(base)
    assert (s.big_room_members, s.presence_coalesce_ms, s.typing_off_members) == (100, 1500, 1000)
    s = Settings.from_env({**base, "CHATSVC_BIG_ROOM_MEMBERS": "2000", "CHATSVC_PRESENCE_COALESCE_MS": "250"})
    # Typing stays on at least as far as aggregation reaches unless told otherwise.
    assert (s.big_room_members, s.presence_coalesce_ms, s.typing_off_members) == (2000, 250, 2000)
    for name, value in (
        ("CHATSVC_BIG_ROOM_MEMBERS", "0"),
        ("CHATSVC_BIG_ROOM_MEMBERS", "many"),
        ("CHATSVC_PRESENCE_COALESCE_MS", "10"),
        ("CHATSVC_PRESENCE_COALESCE_MS", "600000"),
    ):
        assert error_for({**base, name: value}).variable == name
    bad = {**base, "CHATSVC_BIG_ROOM_MEMBERS": "500", "CHATSVC_TYPING_OFF_MEMBERS": "100"}
    assert error_for(bad).variable == "CHATSVC_TYPING_OFF_MEMBERS"


def test_conversation_bounds(base: dict[str, str]) -> None:
    limits = Settings.from_env(base).limits
    assert (
        limits.members_per_room,
        limits.rooms_per_user,
        limits.dms_per_minute,
        limits.blocks_per_user,
    ) == (
        1000,
        500,
        20,
        1000,
    )
    custom = Settings.from_env(
        {
            **base,
            "CHATSVC_MAX_MEMBERS_PER_ROOM": "3",
            "CHATSVC_MAX_ROOMS_PER_USER": "4",
            "CHATSVC_MAX_DMS_PER_MINUTE": "5",
            "CHATSVC_MAX_BLOCKS_PER_USER": "6",
        }
    ).limits
    assert (
        custom.members_per_room,
        custom.rooms_per_user,
        custom.dms_per_minute,
        custom.blocks_per_user,
    ) == (
        3,
        4,
        5,
        6,
    )
    for variable, bad in (
        ("CHATSVC_MAX_MEMBERS_PER_ROOM", "1"),
        ("CHATSVC_MAX_MEMBERS_PER_ROOM", "100001"),
        ("CHATSVC_MAX_ROOMS_PER_USER", "0"),
        ("CHATSVC_MAX_DMS_PER_MINUTE", "x"),
        ("CHATSVC_MAX_BLOCKS_PER_USER", "-1"),
    ):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({**base, variable: bad})


def test_kafka_events_topic_defaults_next_to_the_fanout_topic_and_must_differ(base: dict[str, str]) -> None:
    kafka = {**base, "KAFKA_BROKERS": "127.0.0.1:9092"}
    default = Settings.from_env(kafka).kafka
    assert default is not None and default.events_topic == "chatsvc.events"
    named = Settings.from_env({**kafka, "KAFKA_TOPIC": "acme.fanout"}).kafka
    assert named is not None and named.events_topic == "acme.fanout.events"
    chosen = Settings.from_env({**kafka, "KAFKA_EVENTS_TOPIC": "acme.rooms"}).kafka
    assert chosen is not None and chosen.events_topic == "acme.rooms"
    error = error_for({**kafka, "KAFKA_TOPIC": "same", "KAFKA_EVENTS_TOPIC": "same"})
    assert "KAFKA_EVENTS_TOPIC" in str(error) and "differ" in str(error)
