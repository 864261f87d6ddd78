"""A request id for every HTTP request, for log correlation.

A well-formed ``X-Request-Id`` from the proxy is kept (so one id follows a request through
the Ingress and chatsvc); anything else is replaced by a fresh random id. The id is bound
to the request's logging context (``chatsvc.logs``, which the access log reads too: not
stored on the request, whose storage dict a websocket would hold for its life), and echoed
in the response when its headers are sent (not on a websocket's upgrade, whose headers are
the handshake's).

The middleware is a plain function returning the handler's own awaitable, not a coroutine
awaiting it: a websocket's request handler stays on the stack for the connection's whole
life, and an awaiting middleware would be one more coroutine frame (about 0.3 KiB) held by
every idle connection. The header is therefore set by ``on_response_prepare``
(:func:`install`), when the response's headers go out.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler

from chatsvc import logs

HEADER = "X-Request-Id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(request: web.Request) -> str:
    """The proxy's id when it is short and plain, else a new one."""
    given = request.headers.get(HEADER, "")
    return given if _WELL_FORMED.fullmatch(given) else secrets.token_hex(8)


@web.middleware
def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Bind the request id for the handler's log records and the access log; the handler's
    awaitable is returned as it is (module docstring)."""
    logs.bind_request(request_id(request))
    return handler(request)


async def echo(_: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request's id in the response's headers (run in the
    request's task, where the middleware bound it)."""
    rid = logs.bound_request()
    if rid is not None and not isinstance(response, web.WebSocketResponse):
        response.headers[HEADER] = rid


def install(app: web.Application) -> web.Application:
    """Give every request of ``app`` an id (:func:`middleware`, :func:`echo`); ``app``."""
    app.middlewares.append(middleware)
    app.on_response_prepare.append(echo)
    return app
