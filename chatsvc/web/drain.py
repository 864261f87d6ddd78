"""Engine.IO requests still in flight, so a drain can wait for clients to leave.

At SIGTERM every client is told to reconnect elsewhere; clients then close their
WebSockets and stop polling. The server must keep reading until they have: once aiohttp's
own shutdown begins it ignores incoming data (WebSocket close frames included) and waits
for every request still in flight up to its shutdown timeout, then again while cancelling.
A long-poll whose Engine.IO session has already ended is never answered (Engine.IO only
gives up on it after ping_interval + ping_timeout), so it is cut rather than waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from chatsvc.transport.frameless import coroutine_handler

SETTLE_POLL_SECONDS = 0.05
SETTLE_QUIET_SECONDS = 0.25


async def _refuse() -> web.StreamResponse:
    body = {"code": "shutting_down", "message": "server is restarting; reconnect"}
    return web.json_response(body, status=503)


class OpenTransports:
    """The Engine.IO route's gate: tracks the Engine.IO requests being handled, and while
    draining refuses new sessions.

    A wrapper of the route's handler (:meth:`route`), not aiohttp middlewares: a websocket's
    request handler stays on the stack for the socket's whole life, and each middleware
    (with aiohttp's wrapper around them) is one more coroutine frame held per connection;
    for a websocket the wrapper is a plain function, no frame at all.
    """

    def __init__(self, draining: Callable[[], bool] = lambda: False) -> None:
        self._draining = draining
        self._open: dict[int, web.Request] = {}  # by id(): requests are not hashable
        #: WebSockets, by the task aiohttp runs their request in: an entry stays until its
        #: task is seen done (:meth:`_prune`), so no callback or wrapper is held per socket.
        self._websockets: dict[asyncio.Task[object], web.Request] = {}
        self._pruned_to = 0  # how many websockets the last prune left
        self.settled = False

    @property
    def count(self) -> int:
        """Engine.IO requests (WebSockets, long-polls, posts) still being handled."""
        self._prune()
        return len(self._open) + len(self._websockets)

    def _in_flight(self) -> list[web.Request]:
        self._prune()
        return [*self._open.values(), *self._websockets.values()]

    def _prune(self) -> None:
        """Forget the websockets whose request has ended."""
        websockets = self._websockets
        for task in [task for task in websockets if task.done()]:
            del websockets[task]
        self._pruned_to = len(websockets)

    def route(self, handler: Handler) -> Handler:
        """python-engineio's request ``handler`` behind the gate.

        While draining, a new Engine.IO session (a request without ``sid``) gets 503
        ``{code: "shutting_down", message}``: refused at this level, socket.io-client counts
        it as a failed reconnect attempt and keeps trying (with its backoff) until the proxy
        sends it to another replica; a Socket.IO ``connect_error`` instead would end its
        reconnecting for good.
        """

        async def engineio_route(request: web.Request) -> web.StreamResponse:
            self._open[id(request)] = request
            try:
                return await handler(request)
            finally:
                self._forget(request)

        @coroutine_handler
        def gate(request: web.Request) -> Awaitable[web.StreamResponse]:
            if self._draining() and "sid" not in request.query:
                return _refuse()
            if request.query.get("transport") != "websocket":
                return engineio_route(request)
            # A websocket's handler is on the stack for the connection's whole life: no frame
            # of the gate's own under it (about 0.2 KiB per idle connection). It is kept by the
            # task aiohttp runs its request in (a task per request), forgotten once that task
            # is done: pruned as the count is read, and as websockets double since the last
            # prune (amortized constant per connect, at most twice the open ones kept).
            task = asyncio.current_task()
            if task is None:  # not run by aiohttp's server: as for any other request
                return engineio_route(request)
            self._websockets[task] = request
            if len(self._websockets) > 2 * self._pruned_to + 64:
                self._prune()
            return handler(request)

        return gate

    def attach(self, app: web.Application, handler: Handler, path: str = "/socket.io/") -> None:
        """Route Engine.IO's methods at ``path`` to ``handler`` through the gate (what
        ``socketio.AsyncServer.attach`` does, with the gate in front)."""
        gated = self.route(handler)
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, path, gated)

    def _forget(self, request: web.Request) -> None:
        self._open.pop(id(request), None)

    def _cut(self, request: web.Request) -> None:
        # aiohttp waits for a connection's task even after the peer has gone, and does not
        # cancel handlers: close the connection and cancel the task serving it (Engine.IO
        # answers a cancelled long-poll with a 400 that nobody reads).
        if request.transport is not None:
            request.transport.close()
        request.task.cancel()
        self._forget(request)

    async def settle(self, within: float, session_alive: Callable[[str], bool]) -> int:
        """Wait until no Engine.IO request has been in flight for a short quiet period,
        cutting long-polls of ended sessions as they appear; after ``within`` seconds cut
        every request still in flight and return how many that was.

        The quiet period catches the long-poll a client sends just before it closes its
        session (python-socketio does); cut in time, it cannot hold aiohttp's shutdown.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(within, 0.0)
        quiet_since: float | None = None
        while True:
            now = loop.time()
            for request in list(self._open.values()):
                sid = request.query.get("sid")
                if request.query.get("transport") == "polling" and sid and not session_alive(sid):
                    self._cut(request)
            if self.count:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= SETTLE_QUIET_SECONDS:
                self.settled = True
                return 0
            if now >= deadline:
                break
            await asyncio.sleep(min(deadline - now, SETTLE_POLL_SECONDS))
        stragglers = self._in_flight()
        for request in stragglers:
            self._cut(request)
        self._websockets.clear()  # cut: their tasks end as the cancellations arrive
        self.settled = True
        return len(stragglers)
