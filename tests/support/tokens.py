"""Tokens signed with the test servers' secret."""

from __future__ import annotations

import time
from typing import Any

import jwt

from tests.support.servers import TEST_JWT_SECRET


def token(sub: str = "alice", *, ttl: float = 600, secret: str = TEST_JWT_SECRET, **claims: Any) -> str:
    """An HS256 token for ``sub``; extra claims override the defaults (``exp=None`` drops it)."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "name": sub.title(), "iat": now, "exp": now + int(ttl)}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm="HS256")
