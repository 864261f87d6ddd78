"""Where a Socket.IO client puts its token.

In order: the ``auth`` payload (``{"token": "<jwt>"}``, raw as Hoppscotch sends it or with
a ``Bearer`` prefix), the ``Authorization: Bearer`` header, the ``token`` query parameter.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from chatsvc.errors import TokenInvalid, TokenMissing

MAX_TOKEN_LENGTH = 8192


def _strip_bearer(value: str) -> str:
    # "Bearer" with nothing after it (an empty token field in Hoppscotch) is no token at all.
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return value


def token_from_handshake(environ: dict[str, Any], auth: Any) -> str:
    """The bearer token of a connect attempt; raise ``TokenMissing`` when there is none."""
    token: str | None = None
    if isinstance(auth, dict) and auth.get("token") is not None:
        raw = auth["token"]
        if not isinstance(raw, str):
            raise TokenInvalid("auth.token must be a string")
        token = _strip_bearer(raw)
    elif isinstance(auth, str) and auth.strip():
        token = _strip_bearer(auth)
    if not token:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if isinstance(header, str) and header[:7].lower() == "bearer ":
            token = _strip_bearer(header)
    if not token:
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        values = query.get("token")
        if values:
            token = _strip_bearer(values[0])
    if not token:
        raise TokenMissing()
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("token too long")
    if not token.isascii():
        # A JWT is base64url and dots; anything else (a lone surrogate, which no codec
        # encodes, included) would only fail deeper, in PyJWT, as something unexpected.
        raise TokenInvalid("token is malformed")
    return token
