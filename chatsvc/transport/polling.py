"""Long-polling POSTs answered at once and bounded (pinned: python-engineio 4.15.1; the
contract test pins ``AsyncServer.handle_request``, ``AsyncSocket.handle_post_request``,
``AsyncServer.disconnect``, ``AsyncSocket.close`` and ``AsyncServer._make_response``).

Upstream, a POST over ``max_http_buffer_size`` to a live polling session (no token needed)
ended in ``AsyncServer.disconnect``, whose ``close`` waits for a CLOSE packet that nobody
polls: the request never got an answer and kept its buffered body (about 75 KB) forever.
:class:`BoundedPolling` answers every POST to a live polling session itself. Internals used:
``_async["translate_request"]``, ``cors_allowed_origins`` / ``_cors_allowed_origins``,
``_ok``, ``_make_response``, ``AsyncSocket.connected`` / ``upgraded`` / ``closed`` /
``receive`` / ``close(wait=False)``, ``reason.TRANSPORT_ERROR``; and, for the batches a POST
may carry (:func:`accept_polling_batches`), ``Payload.max_decode_packets``, read by
``Payload.decode`` from ``AsyncSocket.handle_post_request``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import engineio
from aiohttp import web
from engineio import payload as eio_payload

from chatsvc.transport.bad_packets import DECODE_ERRORS, BadPackets, known_type

#: Packets a long-polling POST may carry. python-engineio refuses more than 16
#: (``Payload.max_decode_packets``) with a ValueError that drops them all unanswered, while
#: socket.io-client batches everything queued since its last POST, bounded only by the
#: handshake's ``maxPayload`` bytes. That byte bound (``CHATSVC_MAX_HTTP_BUFFER_BYTES``) and
#: the per-connection rate limit are what bound a POST's work; this only stops absurd counts.
POLLING_PACKETS_MAX = 512


def accept_polling_batches(limit: int = POLLING_PACKETS_MAX) -> None:
    """Let a polling POST carry up to ``limit`` packets. Process-wide (python-engineio reads a
    class attribute of ``engineio.payload.Payload``), so the app factory calls it once."""
    eio_payload.Payload.max_decode_packets = max(limit, 16)


class BoundedPolling(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with long-polling POSTs answered by :meth:`_handle_post`."""

    bad_packets: BadPackets

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        """``AsyncServer.handle_request``, except for a long-polling POST to a live polling
        session, which :meth:`_handle_post` answers (see there)."""
        request = args[0] if args else None
        if isinstance(request, web.BaseRequest) and "j" in request.query:
            # JSONP: no client of chatsvc's uses it (engine.io-client dropped it in v4), and
            # python-engineio's JSONP POST takes the path that hung on an oversize body.
            return web.json_response({"code": "bad_request", "message": "JSONP is not supported"}, status=400)
        if isinstance(request, web.BaseRequest) and request.method == "POST":
            response = await self._handle_post(request)
            if response is not None:
                return response
        return await super().handle_request(*args, **kwargs)

    async def _handle_post(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """The POST branch of ``AsyncServer.handle_request`` with
        ``AsyncSocket.handle_post_request`` (python-engineio 4.15.1), bounded and answered
        at once in every case. None: not a POST this handles (no live polling session, or an
        origin python-engineio refuses); python-engineio answers it (400, body unread).

        Upstream, a POST over ``max_http_buffer_size`` (or one with an unknown packet type)
        ended in ``AsyncServer.disconnect``, whose ``close`` waits for the CLOSE packet to be
        polled: nobody polls it, so the POST never got an answer and held its buffered body
        (about 75 KB per request) forever; an undecodable body was logged with a traceback
        and answered OK. Here the body is never read past the bound: an oversize (or
        unannounced) body is answered 413 (411) and its connection closed, an undecodable one
        400; both end the session without waiting (its CLOSE goes to a pending poll, if any).
        """
        query = request.query
        sid = query.get("sid")
        sock = self.sockets.get(sid) if sid is not None else None
        if sock is None or not sock.connected or sock.upgraded:
            return None
        environ = self._async["translate_request"](request)
        origin = environ.get("HTTP_ORIGIN")
        if origin and self.cors_allowed_origins != []:
            allowed = self._cors_allowed_origins(environ)
            if allowed is not None and origin not in allowed:
                return None
        length = request.content_length
        if length is None or length > self.max_http_buffer_size:
            too_large = length is not None
            self.bad_packets.report(
                sock,
                "too_large" if too_large else "bad_post",
                "POST body over the limit" if too_large else "POST without Content-Length",
            )
            await self._end_polling(sock)
            response = await self._refuse(
                environ,
                "413 PAYLOAD TOO LARGE" if too_large else "411 LENGTH REQUIRED",
                "too_large" if too_large else "length_required",
                f"a POST may carry at most {self.max_http_buffer_size} bytes, with Content-Length",
            )
            response.force_close()  # do not read (or linger over) the rest of the body
            return response
        try:
            # (aiohttp's reader of an empty body fails even an exact read of nothing)
            body = await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            await self._end_polling(sock)  # the client went away mid-body
            return await self._refuse(environ, "400 BAD REQUEST", "bad_post", "incomplete body")
        try:
            packets = eio_payload.Payload(encoded_payload=body.decode("utf-8")).packets
        except DECODE_ERRORS as exc:
            self.bad_packets.report(sock, "bad_post", type(exc).__name__)
            await self._end_polling(sock)
            return await self._refuse(environ, "400 BAD REQUEST", "bad_payload", "not an Engine.IO payload")
        del body
        for pkt in packets:
            if sock.closed:
                break  # a CLOSE earlier in the batch: the rest is for a session that is over
            if not known_type(pkt):
                self.bad_packets.report(sock, "eio_unexpected", "no such packet type")
                continue
            try:
                await sock.receive(pkt)
            except engineio.exceptions.UnknownPacketError:
                self.bad_packets.report(sock, "eio_unexpected", "packet type a client may not send")
        response = await self._make_response(self._ok(), environ)
        return response  # type: ignore[no-any-return]

    async def _end_polling(self, sock: Any) -> None:
        """End a polling session now: its CLOSE goes to a pending poll, if there is one, and
        nothing waits for it to be taken (``AsyncServer.disconnect`` would, forever)."""
        await sock.close(wait=False, reason=self.reason.TRANSPORT_ERROR)
        if self.sockets.get(sock.sid) is sock:
            del self.sockets[sock.sid]

    async def _refuse(
        self, environ: dict[str, Any], status: str, code: str, message: str
    ) -> web.StreamResponse:
        """A small JSON error answer ``{"code", "message"}`` with python-engineio's CORS headers."""
        body = json.dumps({"code": code, "message": message}).encode()
        response = await self._make_response(
            {"status": status, "headers": [("Content-Type", "application/json")], "response": body}, environ
        )
        return response  # type: ignore[no-any-return]
