"""JwtVerifier and mint_token: unit tests, then rejections seen by real clients."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chatsvc.auth.jwt import JwtVerifier, mint_token
from chatsvc.errors import TokenExpired, TokenInvalid
from chatsvc.settings import JwtSettings, Secret
from tests.support.clients import TRANSPORTS, ClientPool, running_server
from tests.support.servers import TEST_JWT_SECRET, ServerProcess
from tests.support.tokens import token

OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"


def hmac_settings(**overrides: Any) -> JwtSettings:
    values: dict[str, Any] = {
        "secret": Secret(TEST_JWT_SECRET),
        "public_key_file": None,
        "algorithms": ("HS256",),
        "issuer": None,
        "audience": None,
        "leeway_seconds": 0.0,
    }
    values.update(overrides)
    return JwtSettings(**values)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 600}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def encode(body: dict[str, Any], key: Any = TEST_JWT_SECRET, algorithm: str = "HS256") -> str:
    return pyjwt.encode(body, key, algorithm=algorithm)


def unsigned(body: dict[str, Any]) -> str:
    """``alg: none`` with an empty signature, as an attacker would send it."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."


def hmac_signed(body: dict[str, Any], key: bytes) -> str:
    """HS256 by hand (PyJWT refuses a PEM as an HMAC key, an attacker does not)."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{part(json.dumps(body).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def invalid(verifier: JwtVerifier, tok: str) -> str:
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(tok)
    assert info.value.code == "token_invalid"
    return info.value.message


# -- unit ------------------------------------------------------------------------------------


def test_valid_token_gives_identity() -> None:
    body = claims(name="Alice A.", roles=["admin", "mod"], rooms=["stock:*", "lobby"])
    identity = JwtVerifier(hmac_settings()).verify(encode(body))
    assert identity.user_id == "alice"
    assert identity.name == "Alice A."
    assert identity.roles == frozenset({"admin", "mod"})
    assert identity.is_admin
    assert identity.room_patterns == ("stock:*", "lobby")
    assert identity.expires_at == body["exp"]


def test_optional_claims_default() -> None:
    identity = JwtVerifier(hmac_settings()).verify(encode(claims()))
    assert identity.name == "alice"
    assert identity.roles == frozenset()
    assert identity.room_patterns is None


def test_roles_as_a_single_string_and_long_names() -> None:
    identity = JwtVerifier(hmac_settings()).verify(encode(claims(roles="admin", name="x" * 500)))
    assert identity.roles == frozenset({"admin"})
    assert identity.name == "x" * 64


def test_bad_signature() -> None:
    assert "signature" in invalid(JwtVerifier(hmac_settings()), encode(claims(), OTHER_SECRET))


def test_algorithm_outside_the_allow_list() -> None:
    message = invalid(JwtVerifier(hmac_settings()), encode(claims(), algorithm="HS384"))
    assert "algorithm" in message


def test_allow_list_with_several_algorithms() -> None:
    verifier = JwtVerifier(hmac_settings(algorithms=("HS256", "HS384")))
    assert verifier.verify(encode(claims(), algorithm="HS384")).user_id == "alice"


def test_alg_none_is_refused() -> None:
    invalid(JwtVerifier(hmac_settings()), unsigned(claims()))


def test_garbage() -> None:
    verifier = JwtVerifier(hmac_settings())
    for tok in ("not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "Bearer"):
        invalid(verifier, tok)


def test_expired() -> None:
    with pytest.raises(TokenExpired) as info:
        JwtVerifier(hmac_settings()).verify(encode(claims(exp=int(time.time()) - 5)))
    assert info.value.code == "token_expired"


def test_leeway_accepts_a_recently_expired_token_and_extends_its_life() -> None:
    exp = int(time.time()) - 5
    identity = JwtVerifier(hmac_settings(leeway_seconds=60)).verify(encode(claims(exp=exp)))
    # The connection must live as long as the token is accepted, not be cut at ``exp``.
    assert identity.expires_at == exp + 60


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_required_claims(missing: str) -> None:
    assert missing in invalid(JwtVerifier(hmac_settings()), encode(claims(**{missing: None})))


@pytest.mark.parametrize("sub", ["", "x" * 129])
def test_sub_shape(sub: str) -> None:
    invalid(JwtVerifier(hmac_settings()), encode(claims(sub=sub)))


def test_sub_must_be_a_string() -> None:
    invalid(JwtVerifier(hmac_settings()), encode(claims(sub=42)))


@pytest.mark.parametrize(
    "extra",
    [{"name": 5}, {"roles": [1, 2]}, {"roles": {"a": 1}}, {"rooms": "lobby"}, {"rooms": [1]}],
    ids=["name", "roles-ints", "roles-dict", "rooms-string", "rooms-ints"],
)
def test_claim_types(extra: dict[str, Any]) -> None:
    invalid(JwtVerifier(hmac_settings()), encode(claims(**extra)))


def test_not_before_in_the_future() -> None:
    assert "not valid yet" in invalid(
        JwtVerifier(hmac_settings()), encode(claims(nbf=int(time.time()) + 300))
    )


def test_issuer_and_audience_when_configured() -> None:
    verifier = JwtVerifier(hmac_settings(issuer="https://auth.example", audience="chatsvc"))
    good = claims(iss="https://auth.example", aud="chatsvc")
    assert verifier.verify(encode(good)).user_id == "alice"
    assert verifier.verify(encode({**good, "aud": ["other", "chatsvc"]})).user_id == "alice"
    assert "issuer" in invalid(verifier, encode({**good, "iss": "https://evil.example"}))
    assert "audience" in invalid(verifier, encode({**good, "aud": "other"}))
    for claim in ("iss", "aud"):
        assert claim in invalid(verifier, encode({k: v for k, v in good.items() if k != claim}))


def test_audience_ignored_when_not_configured() -> None:
    assert JwtVerifier(hmac_settings()).verify(encode(claims(aud="whatever"))).user_id == "alice"


def _pem_pair(kind: str) -> tuple[bytes, bytes]:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize(("kind", "algorithm"), [("rsa", "RS256"), ("ec", "ES256")])
def test_public_key_verification(tmp_path: Path, kind: str, algorithm: str) -> None:
    private, public = _pem_pair(kind)
    public_file = tmp_path / "public.pem"
    public_file.write_bytes(public)
    settings = hmac_settings(secret=None, public_key_file=public_file, algorithms=("RS256", "ES256"))
    verifier = JwtVerifier(settings)
    tok = mint_token(key=private.decode(), algorithm=algorithm, sub="bob", name="Bob", ttl_seconds=60)
    identity = verifier.verify(tok)
    assert (identity.user_id, identity.name) == ("bob", "Bob")
    # Key confusion: an HMAC token "signed" with the public key must not pass.
    invalid(verifier, hmac_signed(claims(), public))
    other_private, _ = _pem_pair(kind)
    invalid(verifier, mint_token(key=other_private.decode(), algorithm=algorithm, sub="bob"))


def test_mint_token_round_trip() -> None:
    tok = mint_token(
        key=TEST_JWT_SECRET,
        algorithm="HS256",
        sub="carol",
        name="Carol",
        roles=["admin"],
        rooms=["stock:*"],
        ttl_seconds=120,
        issuer="iss",
        audience="aud",
    )
    identity = JwtVerifier(hmac_settings(issuer="iss", audience="aud")).verify(tok)
    assert identity.user_id == "carol"
    assert identity.is_admin
    assert identity.room_patterns == ("stock:*",)
    assert identity.expires_at is not None
    assert 100 <= identity.expires_at - time.time() <= 121
    body = pyjwt.decode(tok, options={"verify_signature": False})
    assert set(body) == {"sub", "name", "roles", "rooms", "iat", "exp", "iss", "aud"}


def test_mint_token_minimal_claims() -> None:
    body = pyjwt.decode(
        mint_token(key=TEST_JWT_SECRET, algorithm="HS256", sub="d"), options={"verify_signature": False}
    )
    assert set(body) == {"sub", "iat", "exp"}


# -- integration: what a real client sees ----------------------------------------------------


@pytest.fixture(scope="module")
def hs256_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("jwt")) as server:
        yield server


@pytest.fixture(scope="module")
def iss_aud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("jwt-iss"),
        CHATSVC_JWT_ISSUER="https://auth.st00ck.example",
        CHATSVC_JWT_AUDIENCE="chatsvc",
        CHATSVC_JWT_LEEWAY="0",
    ) as server:
        yield server


REJECTIONS = {
    "bad-signature": (lambda: token(secret=OTHER_SECRET), "token_invalid"),
    "hs384-not-allowed": (lambda: encode(claims(), algorithm="HS384"), "token_invalid"),
    "alg-none": (lambda: unsigned(claims()), "token_invalid"),
    "garbage": (lambda: "definitely-not-a-jwt", "token_invalid"),
    "no-sub": (lambda: encode(claims(sub=None)), "token_invalid"),
    "no-exp": (lambda: token(exp=None), "token_invalid"),
    "expired": (lambda: token(ttl=-30), "token_expired"),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", sorted(REJECTIONS))
async def test_rejection_codes(
    hs256_server: ServerProcess, clients: ClientPool, case: str, transport: str
) -> None:
    make, code = REJECTIONS[case]
    data = await clients.refused(hs256_server.url, make(), transport=transport)
    assert data["code"] == code
    assert data["message"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_missing(hs256_server: ServerProcess, clients: ClientPool, transport: str) -> None:
    data = await clients.refused(hs256_server.url, None, transport=transport)
    assert data["code"] == "token_missing"


@pytest.mark.parametrize("where", ["header", "query", "auth_bearer"])
async def test_rejection_wherever_the_token_is(
    hs256_server: ServerProcess, clients: ClientPool, where: str
) -> None:
    data = await clients.refused(hs256_server.url, token(ttl=-30), where=where)
    assert data["code"] == "token_expired"


async def test_issuer_and_audience_checked_when_configured(
    iss_aud_server: ServerProcess, clients: ClientPool
) -> None:
    url = iss_aud_server.url
    good = {"iss": "https://auth.st00ck.example", "aud": "chatsvc"}
    for bad in ({**good, "iss": "https://evil.example"}, {**good, "aud": "other"}, {"aud": "chatsvc"}):
        data = await clients.refused(url, token(**bad))
        assert data["code"] == "token_invalid", bad
    client = await clients.connect(url, token(**good))
    assert (await client.ok("join", {"room": "lobby"}))["room"] == "lobby"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_expiring_while_connected_ends_the_session(
    hs256_server: ServerProcess, clients: ClientPool, transport: str
) -> None:
    client = await clients.connect(hs256_server.url, token("shortlived", ttl=2), transport=transport)
    await client.ok("join", {"room": "expiry"})
    end = await client.next("session_end", within=6)
    assert end["code"] == "token_expired"
    assert end["reconnect"] is False
    assert end["message"]
    async with asyncio.timeout(5):
        await client.disconnected.wait()
