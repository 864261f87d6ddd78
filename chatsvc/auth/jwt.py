"""JWT verification and minting; the only module that imports PyJWT.

RFC 8725 practice: an explicit algorithm allow-list, one key type per deployment,
``exp`` and ``sub`` required, ``iss``/``aud`` checked when configured.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import jwt as pyjwt

from chatsvc.auth.identity import Identity
from chatsvc.errors import TokenExpired, TokenInvalid
from chatsvc.settings import JwtSettings

MAX_NAME_LENGTH = 64
MAX_ROLES = 16
MAX_ROOM_PATTERNS = 256


class TokenVerifier(Protocol):
    """Turns a bearer token into an :class:`Identity` or raises an ``AuthError``."""

    def verify(self, token: str) -> Identity: ...


class JwtVerifier:
    """Verifies tokens with the configured HMAC secret or public key."""

    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        if settings.public_key_file is not None:
            self._key: Any = Path(settings.public_key_file).read_text()
        else:
            assert settings.secret is not None
            self._key = settings.secret.reveal()

    def verify(self, token: str) -> Identity:
        """Decode and check ``token``; translate PyJWT's errors into ours."""
        s = self._settings
        try:
            claims = pyjwt.decode(
                token,
                self._key,
                algorithms=list(s.algorithms),
                issuer=s.issuer,
                audience=s.audience,
                leeway=s.leeway_seconds,
                options={
                    "require": ["exp", "sub"]
                    + (["iss"] if s.issuer else [])
                    + (["aud"] if s.audience else []),
                    "verify_aud": s.audience is not None,
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
        return _identity(claims, s.leeway_seconds)


def _identity(claims: dict[str, Any], leeway: float) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise TokenInvalid("the 'sub' claim must be a non-empty string of at most 128 characters")
    name = claims.get("name", sub)
    if not isinstance(name, str):
        raise TokenInvalid("the 'name' claim must be a string")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not _strings(roles, MAX_ROLES):
        raise TokenInvalid("the 'roles' claim must be a list of strings")
    rooms = claims.get("rooms")
    if rooms is not None and not _strings(rooms, MAX_ROOM_PATTERNS):
        raise TokenInvalid("the 'rooms' claim must be a list of room names or prefix* patterns")
    exp = claims.get("exp")
    return Identity(
        user_id=sub,
        name=name[:MAX_NAME_LENGTH] or sub,
        roles=frozenset(roles),
        room_patterns=tuple(rooms) if rooms is not None else None,
        # The token is accepted until exp + leeway, so the connection may live that long too.
        expires_at=float(exp) + leeway if isinstance(exp, int | float) else None,
    )


def _strings(value: object, limit: int) -> bool:
    return isinstance(value, list) and len(value) <= limit and all(isinstance(v, str) for v in value)


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
