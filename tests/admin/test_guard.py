"""Credentials of admin calls, and the mapping of chatsvc errors to gRPC status codes."""

from __future__ import annotations

import grpc
import pytest

from chatsvc import errors
from chatsvc.admin.guard import status_of
from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import admin_client, error_code, rpc_error
from tests.support.servers import ServerProcess
from tests.support.tokens import token

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.TokenMissing(), grpc.StatusCode.UNAUTHENTICATED),
        (errors.TokenInvalid(), grpc.StatusCode.UNAUTHENTICATED),
        (errors.TokenExpired(), grpc.StatusCode.UNAUTHENTICATED),
        (errors.AuthForbidden(), grpc.StatusCode.PERMISSION_DENIED),
        (errors.Forbidden(), grpc.StatusCode.PERMISSION_DENIED),
        (errors.InvalidPayload(), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.TooLarge(), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound(), grpc.StatusCode.NOT_FOUND),
        (errors.RateLimited(), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.StoreUnavailable(), grpc.StatusCode.UNAVAILABLE),
        (errors.BusUnavailable(), grpc.StatusCode.UNAVAILABLE),
        (errors.ShuttingDown(), grpc.StatusCode.UNAVAILABLE),
        (errors.Internal(), grpc.StatusCode.INTERNAL),
        (errors.ChatError(), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_of(error: errors.ChatError, status: grpc.StatusCode) -> None:
    assert status_of(error) == status


async def test_missing_credentials_are_unauthenticated(shared_server: ServerProcess) -> None:
    async with admin_client(shared_server.grpc_port, token="") as anonymous:
        error = await rpc_error(
            anonymous.Info(admin_pb2.InfoRequest()), UNAUTHENTICATED, mentions="authorization"
        )
    assert error_code(error) == "token_missing"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Basic b3BzOnNlY3JldA==", "token_invalid"),
        ("Bearer ", "token_invalid"),
        ("Bearer not-a-jwt", "token_invalid"),
        (
            f"Bearer {token('ops', roles=['admin'], secret='another-secret-0123456789-abcdefghijklmnop')}",
            "token_invalid",
        ),
        (f"Bearer {token('ops', roles=['admin'], ttl=-60)}", "token_expired"),
        (f"Bearer {token('ops', roles=['admin'], exp=None)}", "token_invalid"),
    ],
    ids=["basic", "empty", "garbage", "wrong-key", "expired", "no-exp"],
)
async def test_bad_credentials_are_unauthenticated(
    shared_server: ServerProcess, header: str, code: str
) -> None:
    async with admin_client(shared_server.grpc_port, token="") as client:
        client.metadata = (("authorization", header),)
        error = await rpc_error(client.Info(admin_pb2.InfoRequest()), UNAUTHENTICATED)
    assert error_code(error) == code


async def test_a_valid_token_without_the_admin_role_is_permission_denied(
    shared_server: ServerProcess,
) -> None:
    for claims in ({}, {"roles": ["moderator"]}):
        async with admin_client(shared_server.grpc_port, token=token("mallory", **claims)) as client:
            error = await rpc_error(
                client.Publish(admin_pb2.PublishRequest(room="lobby", text="x")),
                grpc.StatusCode.PERMISSION_DENIED,
                mentions="admin",
            )
        assert error_code(error) == "forbidden"


async def test_authentication_comes_before_argument_checks(shared_server: ServerProcess) -> None:
    async with admin_client(shared_server.grpc_port, token="") as anonymous:
        await rpc_error(anonymous.Publish(admin_pb2.PublishRequest(room="b a d")), UNAUTHENTICATED)
