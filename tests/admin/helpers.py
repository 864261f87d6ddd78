"""gRPC clients of the admin API for the tests, and small waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from chatsvc.admin.v1 import admin_pb2_grpc
from tests.support.tokens import token

#: Every RPC and wait in these tests is bounded by this (seconds).
WAIT = 10.0


def admin_token(sub: str = "ops") -> str:
    """A token with the admin role, signed with the test servers' secret."""
    return token(sub, roles=["admin"], ttl=3600)


def unique(prefix: str = "r") -> str:
    """A room or user name no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Admin:
    """``AdminService`` calls with the same credentials and a deadline: ``await admin.Info(req)``."""

    def __init__(self, channel: Any, token: str | None) -> None:
        self.stub = admin_pb2_grpc.AdminServiceStub(channel)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token is not None else ()
        )

    def __getattr__(self, method: str) -> Callable[[Any], Awaitable[Any]]:
        call = getattr(self.stub, method)

        async def invoke(request: Any, **kw: Any) -> Any:
            kw.setdefault("timeout", WAIT)
            return await call(request, metadata=self.metadata, **kw)

        return invoke


@asynccontextmanager
async def channel(port: int, credentials: Any = None) -> AsyncIterator[Any]:
    """A grpc.aio channel to 127.0.0.1:``port`` (TLS when ``credentials`` is given)."""
    target = f"127.0.0.1:{port}"
    if credentials is None:
        chan = grpc.aio.insecure_channel(target)
    else:
        chan = grpc.aio.secure_channel(target, credentials)
    try:
        yield chan
    finally:
        await chan.close()


@asynccontextmanager
async def admin_client(port: int, token: str | None = None, credentials: Any = None) -> AsyncIterator[Admin]:
    """An :class:`Admin` on a fresh channel; ``token`` defaults to an admin token."""
    async with channel(port, credentials) as chan:
        yield Admin(chan, admin_token() if token is None else token or None)


async def rpc_error(call: Awaitable[Any], code: Any, *, mentions: str | None = None) -> grpc.aio.AioRpcError:
    """Await ``call``, expecting it to fail with status ``code`` (and a message naming ``mentions``)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    error = info.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    details = error.details() or ""
    assert "Traceback" not in details and ".py" not in details, details
    if mentions is not None:
        assert mentions in details, details
    return error


def error_code(error: grpc.aio.AioRpcError) -> str | None:
    """The ``chatsvc-error-code`` trailing metadata of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == "chatsvc-error-code":
            return str(value)
    return None


async def until(check: Callable[[], Awaitable[bool]], *, what: str, within: float = WAIT) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.05)
