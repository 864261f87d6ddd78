"""A replica that cannot use Kafka refuses to start, says why in one line, and exits non-zero."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bus.helpers import new_topic
from tests.support.servers import base_env, free_port, run_cli

pytestmark = pytest.mark.integration

STARTUP_FAILED = 3  # cli.py: StartupError
CONFIG_ERROR = 2  # cli.py: SettingsError


def serve(tmp_path: Path, **env: str) -> tuple[int, list[str]]:
    """Run ``chatsvc serve`` to its exit; return the code and the output lines."""
    full = base_env(tmp_path / "data", free_port()) | {"KAFKA_TOPIC": new_topic()} | env
    done = run_cli(["serve"], full, timeout=120)
    lines = (done.stdout + done.stderr).splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, lines


def attempts(lines: list[str]) -> list[str]:
    return [line for line in lines if "Kafka connect attempt" in line]


def tls_env(kafka: dict[str, str], *, ca: str, cert: str, key: str) -> dict[str, str]:
    return {
        "KAFKA_BROKERS": kafka["KAFKA_TEST_SSL"],
        "KAFKA_SSL_CA_CERT": kafka[ca],
        "KAFKA_SSL_CLIENT_CERT": kafka[cert],
        "KAFKA_SSL_CLIENT_KEY": kafka[key],
    }


def test_unreachable_broker_exhausts_exactly_the_configured_attempts(tmp_path: Path) -> None:
    broker = f"127.0.0.1:{free_port()}"
    code, lines = serve(
        tmp_path, KAFKA_BROKERS=broker, KAFKA_CONNECT_RETRIES="3", KAFKA_RETRY_BACKOFF_MS="50"
    )
    assert code == STARTUP_FAILED
    tried = attempts(lines)
    assert len(tried) == 3, "\n".join(lines)
    for number, line in enumerate(tried, start=1):
        assert f"attempt {number}/3 to {broker} failed: {broker}: connection refused" in line
    assert lines[-1] == (
        f"chatsvc: startup failed: cannot connect to Kafka at {broker} after 3 attempt(s): "
        f"{broker}: connection refused"
    )


def test_unknown_host_is_named(tmp_path: Path) -> None:
    code, lines = serve(tmp_path, KAFKA_BROKERS="kafka.invalid:9092", KAFKA_CONNECT_RETRIES="1")
    assert code == STARTUP_FAILED
    assert len(attempts(lines)) == 1
    assert re.search(
        r"startup failed: cannot connect to Kafka .*kafka\.invalid:9092: unknown host", lines[-1]
    )


def test_client_certificate_from_an_untrusted_ca_is_a_tls_handshake_failure(
    tmp_path: Path, kafka: dict[str, str]
) -> None:
    env = tls_env(
        kafka,
        ca="KAFKA_TEST_CA",
        cert="KAFKA_TEST_UNTRUSTED_CLIENT_CERT",
        key="KAFKA_TEST_UNTRUSTED_CLIENT_KEY",
    )
    code, lines = serve(tmp_path, **env, KAFKA_CONNECT_RETRIES="2", KAFKA_RETRY_BACKOFF_MS="50")
    assert code == STARTUP_FAILED
    assert len(attempts(lines)) == 2, "\n".join(lines)
    assert "startup failed: cannot connect to Kafka" in lines[-1]
    assert "TLS handshake failure: the broker rejected the client certificate" in lines[-1]


def test_broker_certificate_from_an_unknown_ca_fails_verification(
    tmp_path: Path, kafka: dict[str, str]
) -> None:
    env = tls_env(
        kafka, ca="KAFKA_TEST_UNTRUSTED_CA", cert="KAFKA_TEST_CLIENT_CERT", key="KAFKA_TEST_CLIENT_KEY"
    )
    code, lines = serve(tmp_path, **env, KAFKA_CONNECT_RETRIES="1")
    assert code == STARTUP_FAILED
    assert "certificate verify failed" in lines[-1], "\n".join(lines)


def test_tls_client_on_the_plaintext_listener_and_vice_versa(tmp_path: Path, kafka: dict[str, str]) -> None:
    env = tls_env(kafka, ca="KAFKA_TEST_CA", cert="KAFKA_TEST_CLIENT_CERT", key="KAFKA_TEST_CLIENT_KEY")
    code, lines = serve(
        tmp_path, **(env | {"KAFKA_BROKERS": kafka["KAFKA_TEST_PLAINTEXT"]}), KAFKA_CONNECT_RETRIES="1"
    )
    assert code == STARTUP_FAILED
    assert "TLS handshake failure" in lines[-1], "\n".join(lines)

    code, lines = serve(tmp_path, KAFKA_BROKERS=kafka["KAFKA_TEST_SSL"], KAFKA_CONNECT_RETRIES="1")
    assert code == STARTUP_FAILED
    assert "the broker answered with TLS" in lines[-1], "\n".join(lines)


@pytest.mark.parametrize("problem", ["key-of-another-cert", "wrong-key-password"])
def test_unusable_tls_files_fail_without_retrying(
    tmp_path: Path, kafka: dict[str, str], problem: str
) -> None:
    env = tls_env(kafka, ca="KAFKA_TEST_CA", cert="KAFKA_TEST_CLIENT_CERT", key="KAFKA_TEST_CLIENT_KEY")
    if problem == "key-of-another-cert":
        env["KAFKA_SSL_CLIENT_KEY"] = kafka["KAFKA_TEST_UNTRUSTED_CLIENT_KEY"]
    else:
        env["KAFKA_SSL_CLIENT_KEY"] = kafka["KAFKA_TEST_CLIENT_ENCRYPTED_KEY"]
        env["KAFKA_SSL_KEY_PASSWORD"] = "not-the-password"
    code, lines = serve(tmp_path, **env)
    assert code == STARTUP_FAILED
    assert attempts(lines) == []
    assert lines[-1].startswith("chatsvc: startup failed: Kafka TLS files cannot be used"), lines[-1]
    assert env["KAFKA_SSL_CLIENT_KEY"] in lines[-1]


def test_missing_key_file_is_a_configuration_error(tmp_path: Path, kafka: dict[str, str]) -> None:
    missing = tmp_path / "nowhere" / "client.key"
    env = tls_env(kafka, ca="KAFKA_TEST_CA", cert="KAFKA_TEST_CLIENT_CERT", key="KAFKA_TEST_CLIENT_KEY")
    code, lines = serve(tmp_path, **(env | {"KAFKA_SSL_CLIENT_KEY": str(missing)}))
    assert code == CONFIG_ERROR
    assert lines[-1] == f"chatsvc: configuration error: KAFKA_SSL_CLIENT_KEY: file not found: {missing}"


def test_partial_tls_variables_are_a_configuration_error(tmp_path: Path, kafka: dict[str, str]) -> None:
    code, lines = serve(
        tmp_path,
        KAFKA_BROKERS=kafka["KAFKA_TEST_SSL"],
        KAFKA_SSL_CA_CERT=kafka["KAFKA_TEST_CA"],
        KAFKA_SSL_CLIENT_CERT=kafka["KAFKA_TEST_CLIENT_CERT"],
    )
    assert code == CONFIG_ERROR
    assert lines[-1] == (
        "chatsvc: configuration error: KAFKA_SSL_CLIENT_KEY: TLS needs all of KAFKA_SSL_CA_CERT, "
        "KAFKA_SSL_CLIENT_CERT, KAFKA_SSL_CLIENT_KEY; set: KAFKA_SSL_CA_CERT, KAFKA_SSL_CLIENT_CERT; "
        "missing: KAFKA_SSL_CLIENT_KEY"
    )
