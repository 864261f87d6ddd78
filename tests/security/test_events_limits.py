"""Connection bounds: sockets per user (``CHATSVC_MAX_CONNECTIONS_PER_USER``) and per client
IP (``CHATSVC_MAX_CONNECTIONS_PER_IP``; ``X-Forwarded-For`` believed only from a trusted
proxy, and only its right-most untrusted hop) refused with ``too_many_connections``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chatsvc.auth.handshake import client_ip, proxy_networks
from chatsvc.settings import Settings, SettingsError
from tests.support.clients import TRANSPORTS, ClientPool, running_server
from tests.support.servers import TEST_JWT_SECRET, ServerProcess
from tests.support.tokens import token

PER_USER, PER_IP = 3, 4


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Loopback is the trusted proxy: X-Forwarded-For names the client."""
    with running_server(
        tmp_path_factory.mktemp("limits"),
        CHATSVC_MAX_CONNECTIONS_PER_USER=str(PER_USER),
        CHATSVC_MAX_CONNECTIONS_PER_IP=str(PER_IP),
        CHATSVC_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No trusted proxy: X-Forwarded-For is whatever the client wrote."""
    with running_server(
        tmp_path_factory.mktemp("direct"), name="direct", CHATSVC_MAX_CONNECTIONS_PER_IP="2"
    ) as running:
        yield running


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    async with ClientPool() as pool:
        yield pool


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def xff(value: str) -> dict[str, str]:
    return {"X-Forwarded-For": value}


async def test_sockets_per_user(behind_proxy: ServerProcess, clients: ClientPool) -> None:
    user = unique("u")
    # Each from its own address, so only the per-user bound applies.
    held = [
        await clients.connect(
            behind_proxy.url, token(user), transport=TRANSPORTS[i % 2], headers=xff(f"198.51.100.{i + 1}")
        )
        for i in range(PER_USER)
    ]
    for transport in TRANSPORTS:
        refused = await clients.refused(
            behind_proxy.url, token(user), transport=transport, headers=xff("198.51.100.99")
        )
        assert refused["code"] == "too_many_connections", refused
    # Another user is not affected; a socket that leaves frees its slot.
    await clients.connect(behind_proxy.url, token(unique("v")), headers=xff("198.51.100.98"))
    await held[0].disconnect()
    ok = await clients.connect(
        behind_proxy.url, token(user), transport="polling", headers=xff("198.51.100.97")
    )
    await ok.ok("join", {"room": unique("r")})


async def test_sockets_per_forwarded_ip(behind_proxy: ServerProcess, clients: ClientPool) -> None:
    address = f"203.0.113.{uuid.uuid4().int % 200 + 1}"
    for i in range(PER_IP):
        await clients.connect(
            behind_proxy.url, token(unique("u")), transport=TRANSPORTS[i % 2], headers=xff(address)
        )
    for transport in TRANSPORTS:
        refused = await clients.refused(
            behind_proxy.url, token(unique("u")), transport=transport, headers=xff(address)
        )
        assert refused["code"] == "too_many_connections", refused
        # Writing another address to the left changes nothing: the proxy appended the real one.
        spoofed = await clients.refused(
            behind_proxy.url, token(unique("u")), transport=transport, headers=xff(f"192.0.2.1, {address}")
        )
        assert spoofed["code"] == "too_many_connections", spoofed
    # Another client address (as the trusted proxy reports it) has its own budget.
    await clients.connect(behind_proxy.url, token(unique("u")), headers=xff(f"{address}, 192.0.2.55"))


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    direct: ServerProcess, clients: ClientPool
) -> None:
    await clients.connect(direct.url, token(unique("u")), headers=xff("192.0.2.10"))
    await clients.connect(direct.url, token(unique("u")), transport="polling", headers=xff("192.0.2.11"))
    refused = await clients.refused(direct.url, token(unique("u")), headers=xff("192.0.2.12"))
    assert refused["code"] == "too_many_connections", refused


def test_client_ip_walks_trusted_hops_from_the_right() -> None:
    trusted = proxy_networks(["10.0.0.0/8", "127.0.0.1/32"])

    class Peer:
        def __init__(self, remote: str) -> None:
            self.remote = remote

    def ip(peer: str, forwarded: str | None) -> str:
        environ: dict[str, object] = {"aiohttp.request": Peer(peer), "REMOTE_ADDR": "127.0.0.1"}
        if forwarded is not None:
            environ["HTTP_X_FORWARDED_FOR"] = forwarded
        return client_ip(environ, trusted)

    assert ip("198.51.100.1", "1.2.3.4") == "198.51.100.1"  # untrusted peer: header ignored
    assert ip("10.1.1.1", "1.2.3.4") == "1.2.3.4"
    assert ip("10.1.1.1", "6.6.6.6, 1.2.3.4") == "1.2.3.4"
    assert ip("10.1.1.1", "1.2.3.4, 10.9.9.9") == "1.2.3.4"  # a chain of trusted proxies
    assert ip("10.1.1.1", "garbage, 1.2.3.4") == "1.2.3.4"
    assert ip("10.1.1.1", "1.2.3.4, garbage") == "10.1.1.1"  # unreadable hop: stop at the proxy
    assert ip("10.1.1.1", None) == "10.1.1.1"
    assert ip("2001:db8::1", "1.2.3.4") == "2001:db8::1"
    assert (
        client_ip({"aiohttp.request": Peer("10.1.1.1"), "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, ()) == "10.1.1.1"
    )


def test_limit_settings(tmp_path: Path) -> None:
    base = {"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, "CHATSVC_DATA_DIR": str(tmp_path)}
    defaults = Settings.from_env(base)
    assert (defaults.limits.connections_per_user, defaults.limits.connections_per_ip) == (20, 0)
    assert defaults.trusted_proxies == ()
    s = Settings.from_env(
        {
            **base,
            "CHATSVC_MAX_CONNECTIONS_PER_USER": "5",
            "CHATSVC_MAX_CONNECTIONS_PER_IP": "100",
            "CHATSVC_TRUSTED_PROXIES": "10.1.2.3/8, 192.168.0.1, fd00::/8",
        }
    )
    assert (s.limits.connections_per_user, s.limits.connections_per_ip) == (5, 100)
    assert s.trusted_proxies == ("10.0.0.0/8", "192.168.0.1/32", "fd00::/8")
    for name, bad in (
        ("CHATSVC_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("CHATSVC_TRUSTED_PROXIES", "proxy.local"),
        ("CHATSVC_MAX_CONNECTIONS_PER_USER", "0"),
        ("CHATSVC_MAX_CONNECTIONS_PER_IP", "-1"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**base, name: bad})
