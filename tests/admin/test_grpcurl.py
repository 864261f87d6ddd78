"""Drive the admin API with grpcurl, knowing nothing but what server reflection tells it.

grpcurl is pinned and built by ``scripts/grpcurl`` (``make test`` installs it first). If it
is missing, this test fails with the command that installs it; it never skips.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.admin.helpers import admin_token, unique
from tests.support.servers import ServerProcess
from tests.support.services import REPO

INSTALL = "scripts/grpcurl --install-only"
PUBLISH = "chatsvc.admin.v1.AdminService/Publish"


@pytest.fixture(scope="module")
def grpcurl() -> str:
    """Path of the pinned grpcurl binary."""
    found = subprocess.run(
        [str(REPO / "scripts" / "grpcurl"), "--which"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(f"grpcurl is not installed: run `{INSTALL}` (needs Go), or `make test`.\n{found.stderr}")
    return found.stdout.strip()


def run(
    grpcurl: str, server: ServerProcess, *command: str, data: str | None = None, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``grpcurl -plaintext [-H auth] [-d data] 127.0.0.1:PORT COMMAND...``, bounded."""
    flags = ["-plaintext", "-max-time", "10"]
    if token:
        flags += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        flags += ["-d", data]
    return subprocess.run(
        [grpcurl, *flags, f"127.0.0.1:{server.grpc_port}", *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_list_and_describe_through_reflection(grpcurl: str, shared_server: ServerProcess) -> None:
    listed = run(grpcurl, shared_server, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"chatsvc.admin.v1.AdminService", "grpc.health.v1.Health"} <= set(listed.stdout.split())

    described = run(grpcurl, shared_server, "describe", "chatsvc.admin.v1.AdminService")
    assert described.returncode == 0, described.stderr
    for rpc in ("Publish", "Presence", "DisconnectUser", "BanUser", "Info"):
        assert f"rpc {rpc} (" in described.stdout

    message = run(grpcurl, shared_server, "describe", "chatsvc.admin.v1.PublishRequest")
    assert "string room = 1;" in message.stdout


def test_info_and_publish(grpcurl: str, shared_server: ServerProcess) -> None:
    info = run(grpcurl, shared_server, "chatsvc.admin.v1.AdminService/Info", token=admin_token())
    assert info.returncode == 0, info.stderr
    body = json.loads(info.stdout)
    assert body["replicas"][0]["id"] == body["replica_id"]

    room = unique()
    request = json.dumps({"room": room, "text": "AAPL crossed 200", "sender": {"id": "alerts"}})
    published = run(grpcurl, shared_server, PUBLISH, data=request, token=admin_token())
    assert published.returncode == 0, published.stderr
    message = json.loads(published.stdout)["message"]
    assert (message["room"], message["kind"], message["user"]["id"]) == (room, "system", "alerts")


def test_errors_show_the_status(grpcurl: str, shared_server: ServerProcess) -> None:
    anonymous = run(grpcurl, shared_server, "chatsvc.admin.v1.AdminService/Info")
    assert anonymous.returncode != 0 and "Unauthenticated" in anonymous.stderr
    bad = run(grpcurl, shared_server, PUBLISH, data='{"room": "b a d", "text": "x"}', token=admin_token())
    assert "InvalidArgument" in bad.stderr and "'room'" in bad.stderr
