"""JWT verification and minting; the only module that imports PyJWT.

RFC 8725 practice: an explicit algorithm allow-list, one key type per deployment,
``exp`` and ``sub`` required, ``iss``/``aud`` checked when configured.

``exp``/``nbf``/``iat`` are checked here, not by PyJWT: it coerces them with ``int()``, so
an ``exp`` of ``"9999999999"`` (a JSON string) passed and, being no number, never reached
the expiry timer. RFC 7519 NumericDate is a JSON number: strings and booleans are refused,
and so is anything past :data:`NUMERIC_DATE_MAX` (a 4,000-digit integer, ``1e400``, which
JSON reads as infinity), so every identity's expiry is a finite float.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt as pyjwt

from chatsvc.auth.handshake import token_from_handshake
from chatsvc.auth.identity import Identity
from chatsvc.auth.jwks import KeySet
from chatsvc.errors import ChatError, TokenExpired, TokenInvalid
from chatsvc.settings import JWT_JWKS_ALGORITHMS, JwtSettings

MAX_NAME_LENGTH = 64
MAX_ROLES = 16
MAX_ROOM_PATTERNS = 256
#: The roles of a token without any: one shared empty set (each ``frozenset()`` is a new
#: 216-byte object, held by every connection's Identity).
NO_ROLES: frozenset[str] = frozenset()
#: Longest role name and room pattern (a room name is at most 64 characters, plus ``*``).
MAX_CLAIM_STRING = 65
#: Largest NumericDate accepted (about the year 5138): beyond it a date is no clock reading.
NUMERIC_DATE_MAX = 1e11


class TokenVerifier(Protocol):
    """Turns a bearer token into an :class:`Identity` or raises an ``AuthError``."""

    def verify(self, token: str) -> Identity: ...

    async def prepare(self, environ: dict[str, Any], auth: Any) -> None:
        """Get ready to verify a connect's token (e.g. fetch its key); never raises."""


#: Longest a connect waits for a JWKS refetch when its token names an unknown ``kid``.
KEY_WAIT_SECONDS = 3.0


class JwtVerifier:
    """Verifies tokens with the configured HMAC secret or public key, or with the key a JWKS
    publishes under the token's ``kid`` (``keys``)."""

    def __init__(self, settings: JwtSettings, keys: KeySet[JwkKey] | None = None) -> None:
        self._settings = settings
        self._keys = keys
        self._key: Any = None
        if keys is not None:
            pass  # each token's key comes from the JWKS cache (_select)
        elif settings.public_key_file is not None:
            self._key = Path(settings.public_key_file).read_text()
        else:
            assert settings.secret is not None
            self._key = settings.secret.reveal()

    def verify(self, token: str) -> Identity:
        """Decode and check ``token``; translate PyJWT's errors into ours."""
        s = self._settings
        key, algorithms = self._select(token)
        try:
            claims = pyjwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=s.issuer,
                audience=s.audience,
                leeway=s.leeway_seconds,
                options={
                    "require": ["exp", "sub"]
                    + (["iss"] if s.issuer else [])
                    + (["aud"] if s.audience else []),
                    "verify_aud": s.audience is not None,
                    # Checked by _times below: PyJWT accepts strings and booleans.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except pyjwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except pyjwt.MissingRequiredClaimError as exc:
            raise TokenInvalid(f"token lacks the {exc.claim!r} claim") from None
        except pyjwt.InvalidAudienceError:
            raise TokenInvalid("token audience does not match") from None
        except pyjwt.InvalidIssuerError:
            raise TokenInvalid("token issuer does not match") from None
        except pyjwt.ImmatureSignatureError:
            raise TokenInvalid("token not valid yet") from None
        except pyjwt.InvalidAlgorithmError:
            raise TokenInvalid("token algorithm not allowed") from None
        except pyjwt.InvalidSignatureError:
            raise TokenInvalid("token signature does not verify") from None
        except pyjwt.PyJWTError:
            raise TokenInvalid("token is malformed") from None
        exp = _times(claims, s.leeway_seconds)
        return _identity(claims, exp + s.leeway_seconds)

    def _select(self, token: str) -> tuple[Any, list[str]]:
        """The key and algorithms for ``token``: the configured ones, or its ``kid``'s JWK."""
        if self._keys is None:
            return self._key, list(self._settings.algorithms)
        kid = _kid(token)
        found = self._keys.lookup(kid)
        if found is None:
            if kid is None:
                raise TokenInvalid("token has no 'kid' and the provider publishes several keys")
            self._keys.request_refetch()
            raise TokenInvalid("token key id is not among the provider's keys")
        algorithms = [a for a in self._settings.algorithms if a in found.algorithms]
        if not algorithms:
            raise TokenInvalid("token algorithm not allowed")
        return found.key, algorithms

    async def prepare(self, environ: dict[str, Any], auth: Any) -> None:
        """Before a connect is verified: if its token names a ``kid`` the JWKS cache lacks,
        wait (at most ``KEY_WAIT_SECONDS``) for one rate-limited refetch. Never raises;
        verification then answers as usual."""
        if self._keys is None or not isinstance(environ, dict):  # a client event named "connect"
            return
        try:
            kid = _kid(token_from_handshake(environ, auth))
        except ChatError:
            return
        if kid is not None and self._keys.lookup(kid) is None:
            await self._keys.refetch(KEY_WAIT_SECONDS)


def _kid(token: str) -> str | None:
    try:
        kid = pyjwt.get_unverified_header(token).get("kid")
    except (pyjwt.PyJWTError, RecursionError, ValueError):
        raise TokenInvalid("token is malformed") from None
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise TokenInvalid("token 'kid' must be a short string")
    return kid


@dataclass(frozen=True)
class JwkKey:
    """A public key from a JWKS and the algorithms it may verify."""

    key: Any
    algorithms: frozenset[str]


_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def parse_jwk(jwk: dict[str, Any]) -> JwkKey:
    """One JWK as a verification key; ``ValueError`` naming why it cannot be one.

    RSA keys verify RS256/384/512 unless ``alg`` names one; EC keys the ES algorithm of
    their curve. Symmetric (``oct``) keys, encryption keys and private keys are refused.
    """
    kty, alg, use = jwk.get("kty"), jwk.get("alg"), jwk.get("use", "sig")
    if use != "sig":
        raise ValueError(f"'use' is {use!r}, not 'sig'")
    if "d" in jwk:
        raise ValueError("it contains a private key")
    if kty == "RSA":
        algorithms = (alg,) if alg is not None else ("RS256", "RS384", "RS512")
    elif kty == "EC":
        curve_alg = _EC_ALGORITHMS.get(str(jwk.get("crv")))
        if curve_alg is None or alg not in (None, curve_alg):
            raise ValueError(f"EC curve {jwk.get('crv')!r} with alg {alg!r} is not supported")
        algorithms = (curve_alg,)
    else:
        raise ValueError(f"key type {kty!r} is not RSA or EC")
    if any(a not in JWT_JWKS_ALGORITHMS for a in algorithms):
        raise ValueError(f"algorithm {alg!r} is not allowed (RS256..RS512, ES256..ES512)")
    try:
        parsed = pyjwt.PyJWK(jwk, algorithm=algorithms[0])
    except (pyjwt.PyJWTError, ValueError, TypeError) as exc:
        raise ValueError(f"unreadable key ({type(exc).__name__})") from None
    return JwkKey(key=parsed.key, algorithms=frozenset(algorithms))


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """The claim as a finite float; ``TokenInvalid`` unless it is a JSON number in range."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid(f"the {name!r} claim must be a number (NumericDate)")
    # int/float comparisons are exact in Python: a 4,000-digit int does not overflow here.
    if (
        not (isinstance(value, int) or math.isfinite(value))
        or not -NUMERIC_DATE_MAX <= value <= NUMERIC_DATE_MAX
    ):
        raise TokenInvalid(f"the {name!r} claim is out of range")
    return float(value)


def _times(claims: dict[str, Any], leeway: float) -> float:
    """Check ``exp`` (required), ``nbf`` and ``iat``; return ``exp``."""
    exp, nbf, iat = (_numeric_date(claims, n) for n in ("exp", "nbf", "iat"))
    if exp is None:
        raise TokenInvalid("token lacks the 'exp' claim")
    now = time.time()
    if exp <= now - leeway:
        raise TokenExpired()
    if (nbf is not None and nbf > now + leeway) or (iat is not None and iat > now + leeway):
        raise TokenInvalid("token not valid yet")
    return exp


def _identity(claims: dict[str, Any], expires_at: float) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128 or not _utf8(sub):
        raise TokenInvalid("the 'sub' claim must be a non-empty string of at most 128 characters")
    name = claims.get("name", sub)
    if not isinstance(name, str) or not _utf8(name):
        raise TokenInvalid("the 'name' claim must be a string")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not _strings(roles, MAX_ROLES):
        raise TokenInvalid("the 'roles' claim must be a list of strings")
    rooms = claims.get("rooms")
    if rooms is not None and not _strings(rooms, MAX_ROOM_PATTERNS):
        raise TokenInvalid("the 'rooms' claim must be a list of room names or prefix* patterns")
    return Identity(
        user_id=sub,
        name=name[:MAX_NAME_LENGTH] or sub,
        roles=frozenset(roles) if roles else NO_ROLES,
        room_patterns=tuple(rooms) if rooms is not None else None,
        # The token is accepted until exp + leeway, so the connection may live that long too.
        expires_at=expires_at,
        issued_at=_numeric_date(claims, "iat"),
    )


def _utf8(value: str) -> bool:
    """False for a string with a lone surrogate (JSON's ``"\\ud800"``): no store, log or
    client can encode it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _strings(value: object, limit: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= limit
        and all(isinstance(v, str) and len(v) <= MAX_CLAIM_STRING and _utf8(v) for v in value)
    )


def mint_token(
    *,
    key: str,
    algorithm: str,
    sub: str,
    name: str | None = None,
    roles: Iterable[str] = (),
    rooms: Iterable[str] | None = None,
    ttl_seconds: float = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """Sign a token (``chatsvc token``, tests, tools). ``key`` is a secret or a private PEM."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl_seconds)}
    if name:
        claims["name"] = name
    if roles := list(roles):
        claims["roles"] = roles
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return pyjwt.encode(claims, key, algorithm=algorithm)
