"""Run chatsvc as a real OS process on 127.0.0.1 for integration tests."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TEST_JWT_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this test process
    has not handed out before (the kernel readily returns the same free port twice in a row,
    e.g. for a server's HTTP and gRPC ports)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def base_env(data_dir: Path, port: int, grpc_port: int | None = None) -> dict[str, str]:
    """A clean environment for a test server: loopback only, known secret, no Kafka/Scylla."""
    keep = {
        k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"}
    }
    return {
        **keep,
        "PYTHONUNBUFFERED": "1",
        "CHATSVC_HOST": "127.0.0.1",
        "CHATSVC_PORT": str(port),
        "CHATSVC_GRPC_PORT": str(grpc_port if grpc_port is not None else free_port()),
        "CHATSVC_DATA_DIR": str(data_dir),
        "CHATSVC_JWT_SECRET": TEST_JWT_SECRET,
        "CHATSVC_LOG_LEVEL": "INFO",
        "CHATSVC_SHUTDOWN_TIMEOUT": "5",
        # The spam filters' duplicate rule (on by default) would couple unrelated tests that
        # share a module's server and users ("alice" sending "burst 1" for each transport);
        # tests of the rule set a window (tests/chat/test_spam_live.py, tests/js/test_spam_js.py).
        "CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS": "0",
        # Surge mode (issue 25) would slow down the rooms tests flood on purpose; its own
        # tests (tests/chat/test_surge.py and friends) turn it on with their thresholds.
        "CHATSVC_SURGE_RATE": "0",
        # Run the cluster suites with interest-based routing (docs/scaling.md) by exporting
        # KAFKA_EVENTS_ROUTING=true to pytest; a test's own value still wins.
        **{k: v for k, v in os.environ.items() if k == "KAFKA_EVENTS_ROUTING"},
    }


@dataclass
class ServerProcess:
    """One ``chatsvc serve`` process; logs go to ``log_path`` for failure diagnosis."""

    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ("serve",)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def port(self) -> int:
        return int(self.env["CHATSVC_PORT"])

    @property
    def grpc_port(self) -> int:
        return int(self.env["CHATSVC_GRPC_PORT"])

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("CHATSVC_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, *, wait: str | None = "/healthz", timeout: float = 60.0) -> ServerProcess:
        """Launch; wait until ``wait`` answers 200 (``None``: don't wait)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatsvc", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait is not None:
            self.wait_http(wait, timeout=timeout)
        return self

    def wait_http(self, path: str, *, status: int = 200, timeout: float = 60.0) -> None:
        """Poll ``path`` until it returns ``status``; fail with the log tail if the process dies."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            got = self.http_status(path)
            if got == status:
                return
            last = str(got)
            time.sleep(0.1)
        raise AssertionError(
            f"{path} did not return {status} within {timeout}s (last {last}):\n{self.log_tail()}"
        )

    def http_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, http.client.HTTPException):
            # Not listening yet, or (rarely) something else answered on a reused port.
            return None

    def http_json(self, path: str) -> tuple[int, dict[str, object]]:
        import json  # noqa: PLC0415

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read())

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end and return its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise AssertionError(f"server ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chatsvc ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "chatsvc", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
