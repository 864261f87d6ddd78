"""Slow consumers: a socket whose client does not take what is sent to it (a websocket that
stopped reading, a poller that stopped polling) cannot grow its outgoing queue without bound
(pinned: python-engineio 4.15.1, see chatsvc.transport.pins).

python-engineio queues every packet for a socket (``AsyncSocket.queue``) and takes it out only
as its client reads. chatsvc's ``LeanQueue`` reports once when more than
:attr:`SlowConsumers.queued_packets_max` wait (``CHATSVC_MAX_QUEUED_PACKETS``); the socket's
backlog is dropped, :meth:`SlowConsumers.slow_consumer` (python-socketio's server:
``session_end`` ``slow_consumer`` and a DISCONNECT) says why, and the Engine.IO session ends.
Internals used: ``AsyncServer.sockets`` / ``websockets`` (chatsvc's), ``AsyncSocket.queue`` /
``upgraded`` / ``closing`` / ``closed`` / ``close``, ``WebSocketResponse._writer.transport``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import engineio
from aiohttp import web

_log = logging.getLogger(__name__)


class SlowConsumers(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server ending slow consumers (lean sockets only: python-engineio's
    own socket keeps its unbounded ``asyncio.Queue``)."""

    websockets: dict[str, web.WebSocketResponse]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: More packets than this queued for one socket ends it as a slow consumer (0: no bound).
        self.queued_packets_max = 0
        self._tasks: set[asyncio.Future[None]] = set()

    def queue_overflowed(self, queue: Any) -> None:
        """A socket's queue holds more than :attr:`queued_packets_max`: end it (a task).
        Called once per queue (``LeanQueue``), so the search for its socket is rare."""
        sock = next((s for s in self.sockets.values() if s.queue is queue), None)
        if sock is None or sock.closing or sock.closed:
            return
        task = asyncio.ensure_future(self._end_slow_consumer(sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_slow_consumer(self, sock: Any) -> None:
        """Drop the backlog of a socket that does not take what is sent to it, let
        :attr:`slow_consumer` say why (python-socketio: ``session_end``, DISCONNECT), then
        end the Engine.IO session: a websocket closes after those last packets, or is aborted
        after ``ping_timeout`` if its client still reads nothing; a polling session is left
        that long for a poll to take them, then closed."""
        dropped = sock.queue.discard()
        _log.info("ending a slow consumer: %d packets it did not take were dropped", dropped)
        try:
            await self.slow_consumer(sock.sid)
        except Exception:  # the Engine.IO end below must happen regardless
            _log.exception("could not tell a slow consumer why it is ended")
        loop = asyncio.get_running_loop()
        if sock.upgraded:
            response = self.websockets.get(sock.sid)
            sock.queue.put_nowait(None)  # the writer sends what is queued, then closes
            loop.call_later(self.ping_timeout, self._abort_websocket, sock, response)
        else:
            # Left open for the next poll to take those last packets (python-engineio answers
            # no poll of a closed session), and closed after ping_timeout in any case.
            loop.call_later(self.ping_timeout, self._close_later, sock)

    def _abort_websocket(self, sock: Any, response: web.WebSocketResponse | None) -> None:
        """Cut a slow consumer's connection if it is still open (its writer is stuck in a
        drain that never ends): the reader and writer then end, and the session with them."""
        writer = response._writer if response is not None else None
        if writer is not None and not writer.transport.is_closing():
            writer.transport.abort()
        self._forget(sock)

    def _close_later(self, sock: Any) -> None:
        if not sock.closed and not sock.closing:
            task = asyncio.ensure_future(
                sock.close(wait=False, abort=True, reason=self.reason.TRANSPORT_ERROR)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._forget(sock)

    def _forget(self, sock: Any) -> None:
        if self.sockets.get(sock.sid) is sock:
            del self.sockets[sock.sid]

    async def slow_consumer(self, eio_sid: str) -> None:
        """Called once for a socket that is being ended as a slow consumer, before its
        Engine.IO end; python-socketio's server sends its ``session_end`` here."""
