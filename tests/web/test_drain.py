"""OpenTransports: which Engine.IO requests a drain waits for, which it cuts, and which it
refuses while draining."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chatsvc.web.drain import OpenTransports
from tests.support.clients import until
from tests.support.frames import coroutine_stack


async def hang(_: web.Request) -> web.Response:
    await asyncio.sleep(60)
    return web.Response(text="late")


async def quick(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def started(transports: OpenTransports, count: int) -> None:
    await until(lambda: transports.count >= count, f"{count} requests in flight", within=5)


async def test_settle_waits_cuts_dead_long_polls_and_then_stragglers() -> None:
    transports = OpenTransports()
    app = web.Application()
    # POST: aiohttp's client would silently retry a GET whose connection was cut.
    transports.attach(app, hang)
    app.router.add_post("/healthz", hang)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = server.make_url("/socket.io/")
        requests = [
            asyncio.ensure_future(session.post(url, params={"transport": "polling", "sid": "dead"})),
            asyncio.ensure_future(session.post(url, params={"transport": "polling", "sid": "live"})),
            asyncio.ensure_future(session.post(server.make_url("/healthz"))),  # not Engine.IO
        ]
        await started(transports, 2)
        assert transports.count == 2
        assert not transports.settled

        stragglers = await transports.settle(0.5, lambda sid: sid == "live")
        assert stragglers == 1  # the dead session's poll was cut at once, not counted
        assert transports.count == 0 and transports.settled
        results = await asyncio.gather(*requests[:2], return_exceptions=True)
        assert all(isinstance(r, aiohttp.ClientError) for r in results), results
        requests[2].cancel()
        await asyncio.gather(requests[2], return_exceptions=True)


async def test_settle_returns_once_quiet() -> None:
    transports = OpenTransports()
    app = web.Application()
    transports.attach(app, quick)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/socket.io/")) as resp:
            assert await resp.text() == "ok"
        assert transports.count == 0
        assert await transports.settle(30, lambda sid: True) == 0  # quiet: returns at once


async def test_while_draining_new_sessions_are_refused_and_open_ones_served() -> None:
    draining = False
    transports = OpenTransports(lambda: draining)
    app = web.Application()
    transports.attach(app, quick)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = server.make_url("/socket.io/")
        async with session.get(url, params={"transport": "polling"}) as resp:
            assert resp.status == 200
        draining = True
        async with session.get(url, params={"transport": "polling"}) as resp:
            assert resp.status == 503
            assert await resp.json() == {
                "code": "shutting_down",
                "message": "server is restarting; reconnect",
            }
        async with session.post(url, params={"transport": "polling", "sid": "open"}) as resp:
            assert resp.status == 200 and await resp.text() == "ok"
        async with session.options(url) as resp:
            assert resp.status == 503  # no sid: a new session's preflight
        assert transports.count == 0


async def test_a_websocket_is_counted_until_its_request_ends_with_no_frame_of_the_gate() -> None:
    """A websocket's handler is on the stack for the connection's life: the gate hands the
    route's coroutine to aiohttp as it is, and forgets the request when its task ends."""
    draining = False
    transports = OpenTransports(lambda: draining)
    stacks: list[list[str]] = []

    async def websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        stacks.append(coroutine_stack())
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    transports.attach(app, websocket)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = server.make_url("/socket.io/")
        async with session.ws_connect(url, params={"transport": "websocket"}) as ws:
            await started(transports, 1)
            assert [[name.rsplit(".", 1)[-1] for name in s] for s in stacks] == [
                ["_handle_request", "_handle", "websocket"]  # aiohttp's, then the route's handler
            ], stacks
            draining = True  # an open websocket is served on; a new one is refused
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, params={"transport": "websocket"})
            assert refused.value.status == 503
            assert transports.count == 1
            await ws.close()
        await until(lambda: transports.count == 0, "the websocket forgotten", within=5)
