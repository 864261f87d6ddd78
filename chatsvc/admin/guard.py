"""Authentication of admin calls and the one place chatsvc errors become gRPC status codes.

:class:`AdminGuard` is a server interceptor wrapping every ``chatsvc.admin.v1`` method
(health and reflection pass through untouched, unauthenticated):

1. credentials: ``authorization: Bearer <JWT>`` metadata verified like socket tokens
   (:class:`~chatsvc.auth.jwt.TokenVerifier`), which must carry the ``admin`` role; or,
   when the port requires client certificates (mutual TLS), the verified certificate
   itself — the TLS handshake already refused anyone without one from the client CA;
2. the call, with the caller available through :func:`caller` (for audit logs);
3. errors: a :class:`~chatsvc.errors.ChatError` is mapped by :func:`status_of` and the
   call aborted with its message (and ``chatsvc-error-code`` trailing metadata); anything
   else is logged and reported as ``INTERNAL`` without details.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc

from chatsvc.auth.identity import Identity
from chatsvc.auth.jwt import TokenVerifier
from chatsvc.errors import (
    AuthError,
    AuthForbidden,
    ChatError,
    Forbidden,
    Internal,
    InvalidPayload,
    LastOwner,
    NotFound,
    RateLimited,
    RoomFull,
    TokenInvalid,
    TokenMissing,
    TooLarge,
    Unavailable,
    UserRoomLimit,
)

log = logging.getLogger(__name__)

SERVICE_NAME = "chatsvc.admin.v1.AdminService"
ERROR_CODE_KEY = "chatsvc-error-code"

_caller: ContextVar[Identity | None] = ContextVar("chatsvc_admin_caller", default=None)

#: Most specific first: the first matching class decides the status.
_STATUS: tuple[tuple[type[ChatError], Any], ...] = (
    (AuthForbidden, grpc.StatusCode.PERMISSION_DENIED),
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidPayload, grpc.StatusCode.INVALID_ARGUMENT),
    (TooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # Conversations (issue 24): its bounds, and the last owner who cannot leave.
    (RoomFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UserRoomLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LastOwner, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_of(error: ChatError) -> Any:
    """The ``grpc.StatusCode`` for one of our errors."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return grpc.StatusCode.INTERNAL


def caller() -> Identity | None:
    """Who is making the current admin call (None outside one)."""
    return _caller.get()


class Authenticator:
    """Turns a call's credentials into an admin :class:`Identity`, or raises an ``AuthError``."""

    def __init__(self, verifier: TokenVerifier, *, trust_client_certs: bool) -> None:
        self._verifier = verifier
        self._trust_client_certs = trust_client_certs

    def authenticate(self, context: Any) -> Identity:
        """Check the bearer token, else the verified client certificate (mutual TLS)."""
        token = _bearer(context.invocation_metadata() or ())
        if token is not None:
            identity = self._verifier.verify(token)
            if not identity.is_admin:
                raise AuthForbidden("the admin API needs a token with the 'admin' role")
            return identity
        if self._trust_client_certs:
            subject = _certificate_subject(context.auth_context() or {})
            if subject is not None:
                return Identity(user_id=f"cert:{subject}", name=subject, roles=frozenset({"admin"}))
        raise TokenMissing("send metadata 'authorization: Bearer <JWT with the admin role>'")


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenInvalid("the authorization metadata must be 'Bearer <token>'")
        return token.strip()
    return None


def _certificate_subject(auth_context: dict[str, Any]) -> str | None:
    if auth_context.get("transport_security_type") not in ([b"ssl"], ["ssl"]):
        return None
    for key in ("x509_common_name", "x509_subject"):
        values = auth_context.get(key)
        if values:
            value = values[0]
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


Behavior = Callable[[Any, Any], Awaitable[Any]]


class AdminGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticate, run, and map errors — for the admin service's methods only."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator
        self._prefix = f"/{SERVICE_NAME}/"

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix):
            return handler
        if handler.unary_stream is not None:  # StreamNotifications
            return grpc.unary_stream_rpc_method_handler(
                self._guarded_stream(handler.unary_stream, handler_call_details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is None:  # every other admin method is unary; keep it that way
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._guarded(handler.unary_unary, handler_call_details.method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guarded_stream(
        self, behavior: Callable[[Any, Any], AsyncIterator[Any]], method: str
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        """:meth:`_guarded` for a server-streaming method: the same checks and mapping."""
        name = method.rsplit("/", 1)[-1]

        async def guarded(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                identity = self._auth.authenticate(context)
                token = _caller.set(identity)
                try:
                    async for item in behavior(request, context):
                        yield item
                finally:
                    _caller.reset(token)
                return
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # translated to a status in one place
                await _abort(context, _translated(exc, name))

        return guarded

    def _guarded(self, behavior: Behavior, method: str) -> Behavior:
        name = method.rsplit("/", 1)[-1]

        async def guarded(request: Any, context: Any) -> Any:
            try:
                identity = self._auth.authenticate(context)
                token = _caller.set(identity)
                try:
                    return await behavior(request, context)
                finally:
                    _caller.reset(token)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # translated to a status in one place
                await _abort(context, _translated(exc, name))

        return guarded


def _translated(exc: Exception, method: str) -> ChatError:
    """A call's failure as the project's error: itself, or ``internal`` (logged)."""
    if isinstance(exc, ChatError):
        return exc
    log.error("admin %s failed", method, exc_info=exc)
    return Internal()


async def _abort(context: Any, error: ChatError) -> None:
    """End the call with ``error``'s status, message and code (trailing metadata)."""
    await context.abort(status_of(error), error.message, trailing_metadata=((ERROR_CODE_KEY, error.code),))
