"""WebSocket upgrades answered without per-message compression (``CHATSVC_WS_COMPRESSION``).

Browsers offer permessage-deflate on every WebSocket, and aiohttp accepts it unless told
otherwise. For a chat server that is the wrong trade: frames are a few hundred bytes, the
compressor and decompressor kept for each connection cost about 100 KiB of memory per
socket (four times an idle connection's own size), and compressing every delivery
separately for every recipient cost a tenth of the CPU in a busy room (bench/README.md).
Node's socket.io declines it by default for the same reasons. RFC 7692 lets a server decline
the offer, and clients then simply send and receive uncompressed frames.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler


@web.middleware
async def decline_ws_compression(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hide the client's WebSocket extension offer, so the upgrade negotiates none."""
    if hdrs.SEC_WEBSOCKET_EXTENSIONS in request.headers:
        headers = request.headers.copy()
        del headers[hdrs.SEC_WEBSOCKET_EXTENSIONS]
        request = request.clone(headers=headers)
    return await handler(request)
