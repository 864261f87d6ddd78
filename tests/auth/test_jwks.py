"""JWKS: keys from a real local HTTP server that rotates them while real clients connect."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chatsvc.auth.jwks import MAX_KEYS, MAX_TTL_SECONDS, JwksKeys, cache_seconds
from chatsvc.auth.jwt import JwkKey, JwtVerifier, parse_jwk
from chatsvc.errors import KeysUnavailable
from chatsvc.settings import Settings, SettingsError
from tests.support.clients import TRANSPORTS, ClientPool
from tests.support.servers import ServerProcess, base_env, free_port, run_cli


class Signer:
    """A key pair with a ``kid``: its public JWK and tokens signed with it."""

    def __init__(self, kid: str, kind: str = "RSA") -> None:
        self.kid = kid
        if kind == "RSA":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
            jwk = pyjwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"
            jwk = pyjwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk: dict[str, Any] = {**jwk, "kid": kid, "use": "sig"}

    def token(self, sub: str, *, kid: str | None = "", algorithm: str | None = None) -> str:
        now = int(time.time())
        headers = {"kid": self.kid if kid == "" else kid} if kid is not None else {}
        return pyjwt.encode(
            {"sub": sub, "iat": now, "exp": now + 600},
            self.private,
            algorithm=algorithm or self.algorithm,
            headers=headers,
        )


class JwksServer:
    """An identity provider's JWKS endpoint on 127.0.0.1 whose key list the test changes."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.cache_control = "public, max-age=1"
        self.redirect: str | None = None
        self.raw: bytes | None = None
        self.chunked = False
        self.gets = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.gets += 1
        if self.chunked:  # no Content-Length: the size shows only while reading
            stream = web.StreamResponse(headers={"Content-Type": "application/json"})
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            body = json.dumps({"keys": self.keys}).encode()
            for start in range(0, len(body), 10_000):
                await stream.write(body[start : start + 10_000])
            await stream.write_eof()
            return stream
        if self.redirect is not None:
            raise web.HTTPFound(self.redirect)
        if self.raw is not None:
            return web.Response(body=self.raw, content_type="application/json")
        return web.json_response({"keys": self.keys}, headers={"Cache-Control": self.cache_control})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def jwks_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = base_env(tmp_path / "data", free_port())
    del env["CHATSVC_JWT_SECRET"]
    env.update(CHATSVC_JWT_JWKS_URL=url, CHATSVC_JWT_JWKS_MIN_INTERVAL="2", CHATSVC_SHUTDOWN_TIMEOUT="1")
    env.update(extra)
    return env


@pytest.fixture
async def provider() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def chatsvc_processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for process in started:
        process.stop()


async def start_chatsvc(env: dict[str, str], log: Path, started: list[ServerProcess]) -> ServerProcess:
    server = ServerProcess(env, log)
    started.append(server)
    # Started from a thread: the provider answering the first fetch runs on this loop.
    return await asyncio.to_thread(server.start)


async def test_keys_rotate_while_clients_connect(
    provider: JwksServer, tmp_path: Path, chatsvc_processes: list[ServerProcess]
) -> None:
    old, new, ec_key = Signer("key-2026-11"), Signer("key-2026-12"), Signer("ec-1", kind="EC")
    # An HMAC key in a JWKS is skipped, never used: a published secret is no secret.
    oct_key = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"}
    provider.keys = [old.jwk, ec_key.jwk, oct_key]
    # Cached for an hour: every fetch below is one a token asked for, none is periodic.
    provider.cache_control = "public, max-age=3600"
    server = await start_chatsvc(
        jwks_env(tmp_path, provider.url), tmp_path / "chatsvc.log", chatsvc_processes
    )
    status, body = await asyncio.to_thread(server.http_json, "/readyz")
    assert status == 200 and "jwks" in body["checks"], body  # type: ignore[operator]
    assert provider.gets == 1

    async with ClientPool() as clients:
        for transport in TRANSPORTS:
            await clients.connect(server.url, old.token(f"old-{transport}"), transport=transport)
        await clients.connect(server.url, ec_key.token("ec-user"))
        # Algorithm confusion: HS256 signed with the public JWK's modulus as "secret", and
        # the skipped oct key's kid.
        confused = pyjwt.encode(
            {"sub": "mallory", "exp": int(time.time()) + 600},
            "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
            algorithm="HS256",
            headers={"kid": "hmac"},
        )
        assert (await clients.refused(server.url, confused))["code"] == "token_invalid"
        no_kid = old.token("no-kid", kid=None)  # several keys published: a kid is required
        assert (await clients.refused(server.url, no_kid))["code"] == "token_invalid"

        # The provider publishes the new key next to the old one; the first tokens signed with
        # it arrive at once, from many clients: one refetch serves them all.
        provider.keys = [old.jwk, new.jwk, ec_key.jwk]
        before = provider.gets
        await asyncio.gather(
            *(
                clients.connect(server.url, new.token(f"new-{i}"), transport=TRANSPORTS[i % 2])
                for i in range(8)
            )
        )
        assert provider.gets - before == 1, provider.gets
        # Overlap: tokens signed with the old key are still accepted.
        await clients.connect(server.url, old.token("old-again"))

        # Unknown kids (forged, or from another issuer) in a burst: refused, one refetch.
        stranger = Signer("not-published")
        before = provider.gets
        refusals = await asyncio.gather(
            *(clients.refused(server.url, stranger.token(f"x{i}")) for i in range(10))
        )
        assert {r["code"] for r in refusals} == {"token_invalid"}
        assert provider.gets - before == 1, provider.gets

        # The old key is withdrawn, and the provider now says max-age=1. The server learns
        # both at its next fetch (here asked for by one more unknown kid); from then on it
        # refreshes every 2 s (max-age=1 held for the least interval), not more often.
        provider.keys = [new.jwk, ec_key.jwk]
        provider.cache_control = "public, max-age=1"
        await clients.refused(server.url, stranger.token("one-more"))
        periodic_from = provider.gets
        await asyncio.sleep(5)
        assert 1 <= provider.gets - periodic_from <= 3, provider.gets - periodic_from
        deadline = time.monotonic() + 15
        while True:
            client = clients.new()
            try:
                await client.connect(server.url, old.token("withdrawn"))
            except Exception:
                break
            await client.disconnect()
            assert time.monotonic() < deadline, "a withdrawn key was still accepted after 15 s"
            await asyncio.sleep(0.5)
        assert client.connect_errors[-1]["data"]["code"] == "token_invalid"
        await clients.connect(server.url, new.token("after-withdrawal"), transport="polling")

    log = server.log_text()
    assert "Traceback" not in log
    assert log.count("JWKS key hmac skipped") == 1, log


async def test_readiness_names_an_unreachable_provider_and_recovers(
    provider: JwksServer, tmp_path: Path, chatsvc_processes: list[ServerProcess]
) -> None:
    signer = Signer("k1")
    closed = free_port()  # nothing listens there
    env = jwks_env(tmp_path, f"http://127.0.0.1:{closed}/jwks")
    server = await start_chatsvc(env, tmp_path / "down.log", chatsvc_processes)
    status, body = await asyncio.to_thread(server.http_json, "/readyz")
    assert status == 503, body
    failing = body["failing"]
    assert isinstance(failing, dict)
    assert failing["jwks"].startswith(f"no JWT signing keys from 127.0.0.1:{closed}: cannot connect"), failing
    async with ClientPool() as clients:
        assert (await clients.refused(server.url, signer.token("u")))["code"] == "token_invalid"
    await asyncio.sleep(2.5)  # at least one retry happened meanwhile
    log = server.log_text()
    assert log.count("JWKS fetch from") == 1, log  # each failure logged once, not per retry
    assert "Traceback" not in log

    # A provider that serves only unusable keys is a named failure too.
    provider.keys = [{"kty": "oct", "kid": "h", "k": "AAAA"}]
    env = jwks_env(tmp_path, provider.url, CHATSVC_PORT=str(free_port()))
    other = await start_chatsvc(env, tmp_path / "oct.log", chatsvc_processes)
    status, body = await asyncio.to_thread(other.http_json, "/readyz")
    assert status == 503 and "no usable RSA or EC signing key" in str(body), body
    provider.keys = [signer.jwk]
    await asyncio.to_thread(other.wait_http, "/readyz", timeout=15)
    async with ClientPool() as clients:
        await clients.connect(other.url, signer.token("u"))


@pytest.mark.parametrize(
    ("url", "environment", "problem"),
    [
        ("ftp://idp.example/jwks", "development", "must be an https:// URL"),
        ("http://idp.example/jwks", "development", "must be an https:// URL"),
        ("http://127.0.0.1:9/jwks", "production", "must be an https:// URL"),
        ("https:///jwks", "development", "expected https://host[:port]/path"),
        ("https://user:pw@idp.example/jwks", "development", "expected https://host[:port]/path"),
        ("https://idp.example:99999/jwks", "development", "expected https://host[:port]/path"),
    ],
)
def test_settings_refuse_bad_urls(url: str, environment: str, problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"CHATSVC_JWT_JWKS_URL": url, "CHATSVC_ENV": environment})
    assert info.value.variable == "CHATSVC_JWT_JWKS_URL"
    assert problem in str(info.value)


def test_settings_accept_https_and_loopback_http_in_development() -> None:
    https = Settings.from_env({"CHATSVC_JWT_JWKS_URL": "https://idp.example/.well-known/jwks.json"})
    assert https.jwt.jwks_url == "https://idp.example/.well-known/jwks.json"
    assert https.jwt.secret is None and not https.jwt.dev_secret_generated
    assert https.jwt.algorithms == ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
    local = Settings.from_env({"CHATSVC_JWT_JWKS_URL": "http://localhost:8081/jwks"})
    assert local.jwt.jwks_min_interval_seconds == 30.0


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"CHATSVC_JWT_SECRET": "x" * 40}, "CHATSVC_JWT_JWKS_URL"),
        ({"CHATSVC_JWT_ALGORITHMS": "HS256"}, "CHATSVC_JWT_ALGORITHMS"),
        ({"CHATSVC_JWT_ALGORITHMS": "RS256,EdDSA"}, "CHATSVC_JWT_ALGORITHMS"),
        ({"CHATSVC_JWT_JWKS_MIN_INTERVAL": "0.5"}, "CHATSVC_JWT_JWKS_MIN_INTERVAL"),
        ({"CHATSVC_JWT_JWKS_MIN_INTERVAL": "7200"}, "CHATSVC_JWT_JWKS_MIN_INTERVAL"),
    ],
)
def test_settings_refuse_conflicts(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"CHATSVC_JWT_JWKS_URL": "https://idp.example/jwks", **extra})
    assert info.value.variable == variable


def test_startup_refuses_a_bad_url_in_one_line(tmp_path: Path) -> None:
    env = jwks_env(tmp_path, "ftp://idp.example/jwks")
    result = run_cli(["serve"], env, timeout=30)
    assert result.returncode == 2
    assert "CHATSVC_JWT_JWKS_URL: must be an https:// URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("header", "minimum", "expected"),
    [
        ("public, max-age=600", 30, 600),
        ("max-age=5", 30, 30),
        ('max-age="120", must-revalidate', 30, 120),
        ("max-age=999999999", 30, MAX_TTL_SECONDS),
        ("no-store", 30, 30),
        ("no-cache, max-age=600", 30, 30),
        (None, 30, 300),
        ("s-maxage=600", 30, 300),
        ("max-age=-1", 30, 300),
    ],
)
def test_cache_seconds_honours_max_age_within_bounds(
    header: str | None, minimum: float, expected: float
) -> None:
    assert cache_seconds(header, minimum=minimum) == expected


def test_parse_jwk_refuses_what_cannot_verify_safely() -> None:
    rsa_jwk = Signer("r").jwk
    assert parse_jwk(rsa_jwk).algorithms == frozenset({"RS256", "RS384", "RS512"})
    assert parse_jwk({**rsa_jwk, "alg": "RS384"}).algorithms == frozenset({"RS384"})
    assert parse_jwk(Signer("e", kind="EC").jwk).algorithms == frozenset({"ES256"})
    bad = [
        ({"kty": "oct", "k": "AAAA"}, "not RSA or EC"),
        ({**rsa_jwk, "alg": "HS256"}, "not allowed"),
        ({**rsa_jwk, "alg": "PS256"}, "not allowed"),
        ({**rsa_jwk, "use": "enc"}, "not 'sig'"),
        ({**rsa_jwk, "d": "AAAA"}, "private key"),
        ({**Signer("e2", kind="EC").jwk, "alg": "ES384"}, "not supported"),
        ({**rsa_jwk, "n": "!!"}, "unreadable key"),
    ]
    for jwk, why in bad:
        with pytest.raises(ValueError, match=why):
            parse_jwk(jwk)


# -- the cache against the same real HTTP server, in process ------------------------------------


@pytest.fixture
async def keys(provider: JwksServer) -> AsyncIterator[JwksKeys[JwkKey]]:
    cache = JwksKeys(provider.url, min_interval=1.0, parse=parse_jwk)
    yield cache
    await cache.aclose()


async def _failure(cache: JwksKeys[JwkKey]) -> str:
    await cache.start()
    with pytest.raises(KeysUnavailable) as info:
        await cache.check()
    return info.value.message


async def test_a_redirect_is_a_failed_fetch(provider: JwksServer, keys: JwksKeys[JwkKey]) -> None:
    provider.redirect = "http://127.0.0.1:9/elsewhere"
    assert (await _failure(keys)).endswith(": HTTP 302")


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversize_document_is_a_failed_fetch(
    provider: JwksServer, keys: JwksKeys[JwkKey], chunked: bool
) -> None:
    provider.chunked = chunked
    provider.keys = [{**Signer("big").jwk, "padding": "x" * 300_000}]
    assert "larger than 262144 bytes" in await _failure(keys)


async def test_not_json_is_a_failed_fetch(provider: JwksServer, keys: JwksKeys[JwkKey]) -> None:
    provider.raw = b"<html>login</html>"
    assert (await _failure(keys)).endswith("the document is not JSON")


async def test_only_the_first_keys_are_read(provider: JwksServer, keys: JwksKeys[JwkKey]) -> None:
    signer = Signer("k")
    provider.keys = [{**signer.jwk, "kid": f"k{i}"} for i in range(MAX_KEYS + 6)]
    await keys.start()
    await keys.check()
    assert keys.lookup(f"k{MAX_KEYS - 1}") is not None
    assert keys.lookup(f"k{MAX_KEYS}") is None
    assert keys.lookup(None) is None  # several keys: a token must name one


async def test_refetches_are_rate_limited_and_failures_keep_the_old_keys(
    provider: JwksServer, keys: JwksKeys[JwkKey], caplog: pytest.LogCaptureFixture
) -> None:
    signer = Signer("only")
    provider.keys = [signer.jwk]
    provider.cache_control = "max-age=3600"
    await keys.start()
    assert keys.lookup(None) is not None and provider.gets == 1
    await asyncio.sleep(2.5)  # min interval 1 s, but max-age says an hour: no refresh
    assert provider.gets == 1
    await asyncio.gather(*(keys.refetch(3.0) for _ in range(20)))
    assert provider.gets == 2  # twenty asks within the interval: one fetch
    provider.raw = b"broken"
    with caplog.at_level(logging.WARNING, logger="chatsvc.auth.jwks"):
        for _ in range(3):
            await keys.refetch(3.0)
    assert provider.gets >= 4
    assert keys.lookup("only") is not None  # the provider broke: the held key stays
    await keys.check()
    failures = [r for r in caplog.records if "JWKS fetch" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]


async def test_the_refresher_survives_an_unexpected_error(provider: JwksServer) -> None:
    signer = Signer("k")
    provider.keys = [signer.jwk]
    calls = 0

    def flaky(jwk: dict[str, Any]) -> JwkKey:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a parser")
        return parse_jwk(jwk)

    cache = JwksKeys(provider.url, min_interval=1.0, parse=flaky)
    try:
        await cache.start()
        with pytest.raises(KeysUnavailable, match="unexpected RuntimeError"):
            await cache.check()
        await cache.refetch(3.0)
        await cache.check()
        assert cache.lookup("k") is not None
    finally:
        await cache.aclose()


async def test_prepare_never_raises_on_odd_handshakes(provider: JwksServer) -> None:
    signer = Signer("k")
    provider.keys = [signer.jwk]
    cache = JwksKeys(provider.url, min_interval=1.0, parse=parse_jwk)
    settings = Settings.from_env({"CHATSVC_JWT_JWKS_URL": provider.url})
    verifier = JwtVerifier(settings.jwt, cache)
    try:
        await cache.start()
        before = provider.gets
        odd: list[tuple[Any, Any]] = [
            ("not-an-environ", None),  # a client event named "connect" with a string payload
            ({}, None),  # no token
            ({}, {"token": 5}),
            ({}, {"token": "not.a.jwt"}),
            ({"QUERY_STRING": "token=" + "A" * 9000}, None),
            ({}, {"token": signer.token("u", kid="k\udcff")}),
        ]
        for environ, auth in odd:
            async with asyncio.timeout(5):
                await verifier.prepare(environ, auth)
        assert provider.gets - before <= 1  # only the odd kid asked, once
        await verifier.prepare({}, {"token": signer.token("u")})  # known kid: no fetch
        assert verifier.verify(signer.token("alice")).user_id == "alice"
    finally:
        await cache.aclose()
