"""The gRPC listener: health, reflection, TLS and mutual TLS, lifecycle."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import WAIT, admin_client, channel, rpc_error
from tests.conftest import ServerFactory
from tests.support.clients import running_server
from tests.support.servers import ServerProcess
from tests.support.services import REPO
from tests.support.tokens import token

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, server and client certificates (scripts/testca.py)."""
    out = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "testca.py"), str(out), "--quiet"], check=True, timeout=60
    )
    return out


@pytest.fixture(scope="module")
def mtls_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose admin port requires a client certificate from certs/ca.pem."""
    with running_server(
        tmp_path_factory.mktemp("mtls"),
        "mtls",
        CHATSVC_GRPC_TLS_CERT=str(certs / "server.pem"),
        CHATSVC_GRPC_TLS_KEY=str(certs / "server.key"),
        CHATSVC_GRPC_TLS_CLIENT_CA=str(certs / "ca.pem"),
    ) as server:
        yield server


def _credentials(certs: Path, client: str | None = "client") -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(certs / f"{client}.pem").read_bytes() if client else None,
    )


async def _health(port: int, service: str = "", credentials: grpc.ChannelCredentials | None = None) -> int:
    async with channel(port, credentials) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT)
        return int(reply.status)


async def test_health_needs_no_credentials(shared_server: ServerProcess) -> None:
    assert await _health(shared_server.grpc_port) == SERVING
    assert await _health(shared_server.grpc_port, "chatsvc.admin.v1.AdminService") == SERVING
    async with channel(shared_server.grpc_port) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def _reflect(
    port: int, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async with channel(port) as chan:
        call = reflection_pb2_grpc.ServerReflectionStub(chan).ServerReflectionInfo(
            iter([request]), timeout=WAIT
        )
        async for response in call:
            return response
    raise AssertionError("no reflection response")


async def test_reflection_describes_the_api_without_credentials(shared_server: ServerProcess) -> None:
    listed = await _reflect(shared_server.grpc_port, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert {"chatsvc.admin.v1.AdminService", "grpc.health.v1.Health"} <= names

    found = await _reflect(
        shared_server.grpc_port,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="chatsvc.admin.v1.AdminService"),
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in found.file_descriptor_response.file_descriptor_proto
    ]
    admin = next(f for f in files if f.name == "chatsvc/admin/v1/admin.proto")
    methods = {m.name for m in admin.service[0].method}
    assert methods == {
        "Publish", "Broadcast", "ListRooms", "GetRoom", "Presence", "GetHistory", "DeleteMessage",
        "DisconnectUser", "KickFromRoom", "MuteUser", "UnmuteUser", "BanUser", "UnbanUser", "Info",
        "CreateRoom", "AddMember", "RemoveMember", "SetRole", "ListMembers", "ListUserRooms",
        "StreamNotifications", "ListFlagged", "SetSlowMode",
    }  # fmt: skip


# -- mutual TLS ------------------------------------------------------------------------------


async def test_mtls_accepts_a_trusted_client_certificate_as_credentials(
    mtls_server: ServerProcess, certs: Path
) -> None:
    creds = _credentials(certs)
    assert await _health(mtls_server.grpc_port, credentials=creds) == SERVING
    async with admin_client(mtls_server.grpc_port, token="", credentials=creds) as admin:
        info = await admin.Info(admin_pb2.InfoRequest())
        assert info.replica_id
        published = await admin.Publish(admin_pb2.PublishRequest(room="mtls", text="over mTLS"))
        assert published.message.kind == "system"
    assert "admin publish by cert:chatsvc-test-client" in mtls_server.log_text()


async def test_mtls_a_token_sent_along_is_still_checked(mtls_server: ServerProcess, certs: Path) -> None:
    async with admin_client(
        mtls_server.grpc_port, token=token("mallory"), credentials=_credentials(certs)
    ) as admin:
        await rpc_error(admin.Info(admin_pb2.InfoRequest()), grpc.StatusCode.PERMISSION_DENIED)


@pytest.mark.parametrize(
    "client", ["untrusted-client", None], ids=["untrusted-certificate", "no-certificate"]
)
async def test_mtls_refuses_other_clients(
    mtls_server: ServerProcess, certs: Path, client: str | None
) -> None:
    async with admin_client(mtls_server.grpc_port, credentials=_credentials(certs, client)) as admin:
        # Refused in the TLS handshake: even a valid admin token never reaches the server.
        await rpc_error(admin.Info(admin_pb2.InfoRequest(), timeout=5), grpc.StatusCode.UNAVAILABLE)
    async with channel(mtls_server.grpc_port) as chan:  # nor does plaintext
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls_without_client_ca_needs_a_token(server_factory: ServerFactory, certs: Path) -> None:
    server = server_factory(
        name="tls",
        CHATSVC_GRPC_TLS_CERT=str(certs / "server.pem"),
        CHATSVC_GRPC_TLS_KEY=str(certs / "server.key"),
    )
    creds = _credentials(certs, None)
    async with admin_client(server.grpc_port, credentials=creds) as admin:
        assert (await admin.Info(admin_pb2.InfoRequest())).replica_id
    async with admin_client(server.grpc_port, token="", credentials=_credentials(certs)) as anonymous:
        # Without CHATSVC_GRPC_TLS_CLIENT_CA a client certificate proves nothing.
        await rpc_error(anonymous.Info(admin_pb2.InfoRequest()), grpc.StatusCode.UNAUTHENTICATED)


# -- lifecycle -------------------------------------------------------------------------------


async def test_sigterm_turns_health_not_serving_then_stops(server_factory: ServerFactory) -> None:
    server = server_factory(name="term", CHATSVC_GRPC_GRACE="2")
    async with channel(server.grpc_port) as chan:
        watch = health_pb2_grpc.HealthStub(chan).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=WAIT
        )
        statuses = aiter(watch)
        assert (await anext(statuses)).status == SERVING
        server.signal(signal.SIGTERM)
        assert (await anext(statuses)).status == NOT_SERVING
        watch.cancel()
    assert await asyncio.to_thread(server.wait_exit, 20) == 0
    assert "gRPC admin API stopped" in server.log_text()


async def test_disabled_means_no_listener(server_factory: ServerFactory) -> None:
    server = server_factory(name="nogrpc", CHATSVC_GRPC_ENABLED="false")
    assert server.http_status("/healthz") == 200
    async with channel(server.grpc_port) as chan:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_taken_port_stops_startup_naming_the_variable(server_factory: ServerFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = server_factory(name="taken", wait=None, CHATSVC_GRPC_PORT=str(port))
        assert server.wait_exit(30) == 3
    assert "CHATSVC_GRPC_PORT" in server.log_text()
