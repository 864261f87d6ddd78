"""Issue 22, items 4 and 8: time claims are JSON numbers in range (RFC 7519 NumericDate)
and odd but validly signed claims are ``token_invalid``, never anything else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from typing import Any

import pytest

from chatsvc.auth.handshake import token_from_handshake
from chatsvc.auth.jwt import NO_ROLES, JwtVerifier
from chatsvc.errors import TokenExpired, TokenInvalid
from chatsvc.settings import JwtSettings, Secret
from tests.support.servers import TEST_JWT_SECRET


def verifier(leeway: float = 0.0) -> JwtVerifier:
    return JwtVerifier(
        JwtSettings(
            secret=Secret(TEST_JWT_SECRET),
            public_key_file=None,
            algorithms=("HS256",),
            issuer=None,
            audience=None,
            leeway_seconds=leeway,
        )
    )


def signed_json(payload: str) -> str:
    """HS256 over a payload given as JSON text (big numbers, 1e400, escapes as written)."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{part(payload.encode())}"
    signature = hmac.new(TEST_JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


MANY = "[" + ",".join(['"x"'] * 5000) + "]"


ODD_TIME_CLAIMS = [
    pytest.param(f'{{"sub":"a","exp":"{later()}"}}', id="exp-string"),
    pytest.param('{"sub":"a","exp":true}', id="exp-true"),
    pytest.param('{"sub":"a","exp":' + "9" * 4000 + "}", id="exp-4000-digits"),
    pytest.param('{"sub":"a","exp":-' + "9" * 4000 + "}", id="exp-minus-4000-digits"),
    pytest.param('{"sub":"a","exp":1e400}', id="exp-1e400"),
    pytest.param('{"sub":"a","exp":Infinity}', id="exp-infinity"),
    pytest.param('{"sub":"a","exp":NaN}', id="exp-nan"),
    pytest.param('{"sub":"a","exp":null}', id="exp-null"),
    pytest.param('{"sub":"a","exp":[1]}', id="exp-list"),
    pytest.param(f'{{"sub":"a","exp":{later()},"nbf":"0"}}', id="nbf-string"),
    pytest.param(f'{{"sub":"a","exp":{later()},"nbf":1e400}}', id="nbf-1e400"),
    pytest.param(f'{{"sub":"a","exp":{later()},"iat":"0"}}', id="iat-string"),
    pytest.param(f'{{"sub":"a","exp":{later()},"iat":false}}', id="iat-false"),
    pytest.param(f'{{"sub":"a","exp":{later()},"iat":' + "1" * 4000 + "}", id="iat-4000-digits"),
    pytest.param(f'{{"sub":"\\ud800","exp":{later()}}}', id="sub-lone-surrogate"),
    pytest.param(f'{{"sub":"a","name":"\\udfff","exp":{later()}}}', id="name-lone-surrogate"),
    pytest.param(f'{{"sub":"a","name":7,"exp":{later()}}}', id="name-number"),
    pytest.param(f'{{"sub":"a","name":{{"x":1}},"exp":{later()}}}', id="name-object"),
    pytest.param(f'{{"sub":7,"exp":{later()}}}', id="sub-number"),
    pytest.param(f'{{"sub":"a","roles":["\\ud800"],"exp":{later()}}}', id="role-lone-surrogate"),
    pytest.param(f'{{"sub":"a","roles":{MANY},"exp":{later()}}}', id="roles-huge"),
    pytest.param(f'{{"sub":"a","rooms":{MANY},"exp":{later()}}}', id="rooms-huge"),
    pytest.param(f'{{"sub":"a","rooms":["{"x" * 5000}"],"exp":{later()}}}', id="room-pattern-huge"),
    pytest.param(f'{{"sub":"a","rooms":[[]],"exp":{later()}}}', id="rooms-nested"),
    pytest.param(f'{{"sub":"a","rooms":"lobby","exp":{later()}}}', id="rooms-string"),
]


@pytest.mark.parametrize("payload", ODD_TIME_CLAIMS)
def test_odd_claims_are_token_invalid(payload: str) -> None:
    with pytest.raises(TokenInvalid) as info:
        verifier().verify(signed_json(payload))
    assert info.value.code == "token_invalid", info.value


def test_numeric_dates_accepted_and_finite() -> None:
    exp = time.time() + 600.5
    identity = verifier(leeway=2).verify(signed_json(f'{{"sub":"a","exp":{exp},"iat":{int(time.time())}}}'))
    assert identity.expires_at == pytest.approx(exp + 2)
    assert isinstance(identity.expires_at, float) and math.isfinite(identity.expires_at)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_checks_still_apply(claim: str) -> None:
    now = int(time.time())
    body: dict[str, Any] = {"exp": now + 600, claim: now + 3600 if claim != "exp" else now - 5}
    text = '{"sub":"a",' + ",".join(f'"{k}":{v}' for k, v in body.items()) + "}"
    if claim == "exp":
        with pytest.raises(TokenExpired):
            verifier().verify(signed_json(text))
    else:
        with pytest.raises(TokenInvalid, match="not valid yet"):
            verifier().verify(signed_json(text))
    verifier(leeway=7200).verify(signed_json(text))  # within the leeway every one passes


@pytest.mark.parametrize("raw", ["\ud800abc", "Bearer \udfff", "abc.déf.ghi"])
def test_non_ascii_tokens_are_token_invalid(raw: str) -> None:
    with pytest.raises(TokenInvalid):
        token_from_handshake({}, {"token": raw})


def test_identities_without_roles_share_one_empty_set() -> None:
    """Every connection holds its Identity: an empty frozenset each was 216 bytes apiece."""
    first = verifier().verify(signed_json(f'{{"sub":"a","exp":{later()}}}'))
    second = verifier().verify(signed_json(f'{{"sub":"b","exp":{later()},"roles":[]}}'))
    assert first.roles == second.roles == frozenset() and first.roles is second.roles is NO_ROLES
    admin = verifier().verify(signed_json(f'{{"sub":"c","exp":{later()},"roles":["admin"]}}'))
    assert admin.roles == {"admin"}
