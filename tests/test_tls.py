"""chatsvc.tls: the one TLS-context helper, proven by real handshakes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from chatsvc.settings import Secret
from chatsvc.tls import tls_context
from tests.support.services import REPO


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    testca = REPO / "scripts" / "testca.py"
    subprocess.run([sys.executable, str(testca), str(out), "--quiet"], check=True, timeout=60)
    return out


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str = "localhost") -> str:
    """Connect ``client`` to a server using ``server``; the server's view of the peer's CN."""
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(item[0] for item in peer.get("subject", ()))
        if not seen.done():
            seen.set_result(str(subject.get("commonName", "")))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=hostname
            )
            if await reader.read(2) != b"ok":  # TLS 1.3: a refused client learns it on reading
                raise ConnectionError("the server closed the connection")
            writer.close()
            return await seen
    finally:
        listener.close()
        await listener.wait_closed()


def test_every_context_is_tls12_or_later_and_clients_verify_chain_and_name(pki: Path) -> None:
    client = tls_context(ca_cert=pki / "ca.pem")
    server = tls_context(server=True, cert=pki / "server.pem", key=pki / "server.key")
    system = tls_context()
    for context in (client, server, system):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    for context in (client, system):
        assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert server.verify_mode == ssl.CERT_NONE, "plain TLS server: no client certificate asked"


async def test_a_client_trusting_the_ca_reaches_the_server_and_offers_its_certificate(pki: Path) -> None:
    server = tls_context(server=True, cert=pki / "server.pem", key=pki / "server.key", ca_cert=pki / "ca.pem")
    client = tls_context(ca_cert=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
    assert await _handshake(server, client) == "chatsvc-test-client"


async def test_an_encrypted_client_key_is_opened_with_its_password(pki: Path) -> None:
    password = Secret((pki / "client-key-password.txt").read_text())
    server = tls_context(server=True, cert=pki / "server.pem", key=pki / "server.key", ca_cert=pki / "ca.pem")
    client = tls_context(
        ca_cert=pki / "ca.pem",
        cert=pki / "client.pem",
        key=pki / "client-encrypted.key",
        key_password=password,
    )
    assert await _handshake(server, client) == "chatsvc-test-client"
    with pytest.raises(ssl.SSLError):
        tls_context(cert=pki / "client.pem", key=pki / "client-encrypted.key", key_password=Secret("wrong"))


async def test_a_client_refuses_an_untrusted_server_and_a_wrong_host_name(pki: Path) -> None:
    server = tls_context(server=True, cert=pki / "server.pem", key=pki / "server.key")
    untrusting = tls_context(ca_cert=pki / "untrusted-ca.pem")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server, untrusting)
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server, tls_context(ca_cert=pki / "ca.pem"), hostname="elsewhere.example")


async def test_a_mutual_tls_server_refuses_clients_without_a_certificate_from_its_ca(pki: Path) -> None:
    server = tls_context(server=True, cert=pki / "server.pem", key=pki / "server.key", ca_cert=pki / "ca.pem")
    for client in (
        tls_context(ca_cert=pki / "ca.pem"),
        tls_context(
            ca_cert=pki / "ca.pem", cert=pki / "untrusted-client.pem", key=pki / "untrusted-client.key"
        ),
    ):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _handshake(server, client)


def test_unusable_files_raise_what_callers_translate(pki: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises((OSError, ValueError)):
        tls_context(ca_cert=junk)
    with pytest.raises(OSError):
        tls_context(ca_cert=tmp_path / "missing.pem")
    with pytest.raises(ssl.SSLError):
        tls_context(server=True, cert=pki / "server.pem", key=pki / "client.key")  # not its key
    with pytest.raises(ValueError, match="certificate and its key"):
        tls_context(server=True, cert=pki / "server.pem")
