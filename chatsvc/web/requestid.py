"""A request id for every HTTP request, for log correlation.

A well-formed ``X-Request-Id`` from the proxy is kept (so one id follows a request through
the Ingress and chatsvc); anything else is replaced by a fresh random id. The id is bound
to the request's logging context (``chatsvc.logs``), stored on the request for the access
log, and echoed in the response when its headers are not sent yet.
"""

from __future__ import annotations

import re
import secrets

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
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id for the handler's log records and the access log."""
    rid = request_id(request)
    request[logs.REQUEST_ID_KEY] = rid
    logs.bind_request(rid)
    response = await handler(request)
    if not response.prepared:
        response.headers[HEADER] = rid
    return response
