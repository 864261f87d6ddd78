"""The gRPC listener of the admin API, running in the web server's process and event loop.

Serves ``chatsvc.admin.v1.AdminService`` (behind :class:`~chatsvc.admin.guard.AdminGuard`),
``grpc.health.v1.Health`` and server reflection (so ``grpcurl`` needs no proto files).
Plaintext on loopback by default; TLS with ``CHATSVC_GRPC_TLS_CERT``/``KEY``, and mutual
TLS (a client certificate from ``CHATSVC_GRPC_TLS_CLIENT_CA`` is required, and accepted
as admin credentials) when ``CHATSVC_GRPC_TLS_CLIENT_CA`` is set too.

Shutdown: :meth:`AdminServer.enter_graceful_shutdown` turns health to NOT_SERVING (at
SIGTERM, before the sockets drain), then :meth:`AdminServer.stop` refuses new calls and
gives running ones ``CHATSVC_GRPC_GRACE`` seconds.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chatsvc.admin.guard import SERVICE_NAME, AdminGuard, Authenticator
from chatsvc.admin.v1 import admin_pb2_grpc
from chatsvc.auth.jwt import TokenVerifier
from chatsvc.errors import StartupError
from chatsvc.settings import GrpcSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_credentials(settings: GrpcSettings) -> Any:
    """TLS credentials for the listener, or None for plaintext."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class AdminServer:
    """Owns the ``grpc.aio`` server: start, graceful shutdown, stop."""

    def __init__(
        self, settings: GrpcSettings, servicer: admin_pb2_grpc.AdminServiceServicer, verifier: TokenVerifier
    ) -> None:
        self._settings = settings
        self._servicer = servicer
        self._authenticator = Authenticator(verifier, trust_client_certs=settings.tls_client_ca is not None)
        self._server: Any = None
        self._health: Any = None
        self.port: int | None = None

    async def start(self) -> None:
        """Bind and serve; raise ``StartupError`` if the port cannot be bound."""
        s = self._settings
        server = grpc.aio.server(
            interceptors=[AdminGuard(self._authenticator)],
            options=[
                # gRPC sets SO_REUSEPORT by default: a second process would share the port
                # silently instead of failing to start.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self._servicer, server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = _address(s.host, s.port)
        try:
            credentials = server_credentials(s)
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except (RuntimeError, OSError) as exc:
            raise StartupError(
                f"gRPC admin API cannot listen on {address} (CHATSVC_GRPC_PORT): {exc}"
            ) from None
        if not port:
            raise StartupError(f"gRPC admin API cannot listen on {address} (CHATSVC_GRPC_PORT)")
        await server.start()
        self._server, self.port = server, port
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        mode = "mutual TLS" if s.tls_client_ca else "TLS" if s.tls_cert else "plaintext"
        log.info("gRPC admin API listening on %s (%s)", _address(s.host, port), mode)

    async def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING from now on (load balancers stop sending new calls)."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()

    async def stop(self) -> None:
        """Refuse new calls; let running ones finish within the grace period; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        await self.enter_graceful_shutdown()
        await server.stop(self._settings.grace_seconds)
        log.info("gRPC admin API stopped")
