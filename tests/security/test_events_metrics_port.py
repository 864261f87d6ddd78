"""Issue 22: in production ``/metrics`` is not on the public listener (the Ingress routes
``/`` to it) but on ``CHATSVC_METRICS_PORT``; in development it stays on the public port."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from chatsvc.settings import Settings, SettingsError
from tests.conftest import ServerFactory
from tests.support.servers import TEST_JWT_SECRET, free_port


def metrics_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read()
            assert b"chatsvc_" in body
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def test_production_serves_metrics_on_its_own_port(server_factory: ServerFactory) -> None:
    metrics_port = free_port()
    server = server_factory(CHATSVC_ENV="production", CHATSVC_METRICS_PORT=str(metrics_port))
    assert server.http_status("/healthz") == 200
    assert server.http_status("/metrics") == 404  # not on the public listener
    assert metrics_status(metrics_port) == 200
    assert "Traceback" not in server.log_text()


def test_development_keeps_metrics_on_the_public_port(server_factory: ServerFactory) -> None:
    server = server_factory()
    assert metrics_status(server.port) == 200
    separate = free_port()
    moved = server_factory(name="moved", CHATSVC_METRICS_PORT=str(separate))
    assert moved.http_status("/metrics") == 404
    assert metrics_status(separate) == 200


def test_metrics_port_settings(tmp_path: Path) -> None:
    base = {"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, "CHATSVC_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).metrics_port is None
    assert Settings.from_env({**base, "CHATSVC_ENV": "production"}).metrics_port == 9090
    assert Settings.from_env({**base, "CHATSVC_METRICS_PORT": "9100"}).metrics_port == 9100
    for bad in ({"CHATSVC_ENV": "production", "CHATSVC_METRICS_PORT": "0"}, {"CHATSVC_METRICS_PORT": "8080"}):
        with pytest.raises(SettingsError, match="CHATSVC_METRICS_PORT"):
            Settings.from_env({**base, **bad})
