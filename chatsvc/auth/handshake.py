"""What a connect attempt says about its client: where it put its token, its IP.

Token, in order: the ``auth`` payload (``{"token": "<jwt>"}``, raw as Hoppscotch sends it
or with a ``Bearer`` prefix), the ``Authorization: Bearer`` header, the ``token`` query
parameter. IP: the TCP peer, or, when the peer is a trusted proxy, the right-most address
of ``X-Forwarded-For`` that is not itself a trusted proxy (the left part is whatever the
client wrote, so it is never believed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """The parsed ``CHATSVC_TRUSTED_PROXIES`` (validated by the settings already)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _transport_peer(request: Any) -> str | None:
    """The TCP peer's address from the request's transport. Not ``request.remote``: that
    memoizes it in the request's cache dict, whose grown table (0.4 KiB) a websocket's
    request then holds for the connection's life."""
    transport = getattr(request, "transport", None)
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    if isinstance(peer, (list, tuple)) and peer:
        return str(peer[0])
    return None


def client_ip(environ: dict[str, Any], trusted: tuple[Network, ...]) -> str:
    """The client's IP address for per-IP bounds (see the module docstring)."""
    request = environ.get("aiohttp.request")
    # python-engineio's aiohttp driver sets REMOTE_ADDR to a constant 127.0.0.1.
    peer_text = (
        _transport_peer(request) or getattr(request, "remote", None) or str(environ.get("REMOTE_ADDR", ""))
    )
    peer = _address(peer_text)
    if peer is None:
        return peer_text
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if not trusted or not isinstance(forwarded, str):
        return str(peer)
    hop = peer
    for item in reversed(forwarded.split(",")[-32:]):
        if not any(hop in net for net in trusted):
            break  # hop is the first untrusted address: the client as far as we can tell
        candidate = _address(item)
        if candidate is None:
            break
        hop = candidate
    return str(hop)
