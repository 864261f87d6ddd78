"""What an upgraded connection no longer needs, dropped for as long as its websocket lives
(pinned: aiohttp 3.14.5, python-engineio 4.15.1; ``chatsvc.transport.pins``).

Internals used: aiohttp's ``RequestHandler._parser`` / ``_payload_parser`` / ``_messages``
(via ``request.protocol``) and ``WebSocketResponse._writer`` (its ``use_mask`` and ``get_random_bits``); the
WSGI-style environ python-engineio and python-socketio keep per session. The aiohttp code
reading what is dropped is hash-pinned in ``chatsvc.transport.pins``.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

from aiohttp import web

#: What anything reads from a WSGI-style environ once its Engine.IO session exists:
#: chatsvc's handshake (token, origin), python-socketio (CONNECT of a namespace, the
#: blacklist, the admin UI's client list) and python-engineio's websocket driver.
ENVIRON_KEPT = frozenset(
    {
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "wsgi.url_scheme",
        "aiohttp.request",
        "HTTP_AUTHORIZATION",
        "HTTP_HOST",
        "HTTP_ORIGIN",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PROTO",
    }
)


def slim_environ(environ: dict[str, Any] | None) -> None:
    """Keep only :data:`ENVIRON_KEPT` of an environ that lives as long as its socket
    (python-socketio keeps the handshake's; the websocket request's is held by the frames
    of python-engineio's handler). In place, and rebuilt: a dict's table never shrinks on
    ``del``, and every header became an ``HTTP_*`` key of it (browsers send a dozen)."""
    if environ is None or environ.keys() <= ENVIRON_KEPT:
        return  # already slim (both callers may see the same dict)
    kept = {key: environ[key] for key in ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)


#: What an upgraded connection's ``RequestHandler._messages`` becomes (falsy, length 0).
_NO_MESSAGES: Any = ()


def release_http_state(request: web.Request) -> None:
    """Drop what aiohttp keeps of an upgraded request that nothing reads again, for as long
    as the websocket lives: the HTTP parser (``RequestHandler._parser``; once the upgrade is
    accepted every byte goes to the websocket reader, and ``connection_lost`` drops it
    anyway) and its empty queue of parsed requests (``RequestHandler._messages``).

    Not the parsed request (``request._message``, its raw header bytes among it): aiohttp's
    ``RequestHandler.start()`` holds it in a local for the connection's life, so a copy
    without them on the request freed nothing and cost a tuple."""
    protocol = request.protocol
    if protocol is not None and protocol._payload_parser is not None:  # the upgrade was accepted
        protocol._parser = None
        # Its queue of parsed requests: empty from now on (only the parser fills it), and
        # an empty deque still holds a 64-slot block. Read only as ``not``/``len`` after this.
        protocol._messages = _NO_MESSAGES


#: What a server websocket writer's ``get_random_bits`` becomes: one for all. A server
#: never masks its frames (RFC 6455 5.1), so it is never called; aiohttp builds a partial
#: of a fresh bound method (three objects, about 0.2 KiB) for every websocket anyway.
_NEVER_MASKS = partial(secrets.randbits, 32)


def release_websocket_state(response: web.WebSocketResponse) -> None:
    """Drop what a prepared server websocket holds that it never uses: its writer's own
    mask-bits generator (``WebSocketWriter.get_random_bits``, read only when ``use_mask``)."""
    writer = response._writer
    if writer is not None and not writer.use_mask:
        writer.get_random_bits = _NEVER_MASKS
