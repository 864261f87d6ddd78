"""Request ids: echoed in every response's headers but a websocket's upgrade, bound for the
handler, and no coroutine frame of the middleware's own under a request's handler."""

from __future__ import annotations

import re

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from chatsvc import logs
from chatsvc.web import requestid
from tests.support.frames import coroutine_stack


async def test_every_response_carries_the_id_and_no_middleware_frame_is_held() -> None:
    seen: dict[str, object] = {}

    async def ok(request: web.Request) -> web.Response:
        seen["stack"] = coroutine_stack()
        seen["id"] = logs.bound_request()
        return web.Response(text="ok")

    async def missing(_: web.Request) -> web.Response:
        raise web.HTTPNotFound(text="nothing here")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    app = requestid.install(web.Application())
    app.router.add_get("/ok", ok)
    app.router.add_get("/missing", missing)
    app.router.add_get("/ws", websocket)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/ok"), headers={"X-Request-Id": "proxy-7"}) as resp:
            assert resp.headers["X-Request-Id"] == "proxy-7" and seen["id"] == "proxy-7"
        # The middleware returned the handler's coroutine: aiohttp's own frames, then ok.
        assert seen["stack"] == [
            "RequestHandler._handle_request",
            "Application._handle",
            "_fix_request_current_app.<locals>.impl",
            "test_every_response_carries_the_id_and_no_middleware_frame_is_held.<locals>.ok",
        ], seen["stack"]
        async with session.get(server.make_url("/ok"), headers={"X-Request-Id": "no spaces!"}) as resp:
            fresh = resp.headers["X-Request-Id"]
            assert re.fullmatch(r"[0-9a-f]{16}", fresh) and seen["id"] == fresh
        async with session.get(server.make_url("/missing")) as resp:
            assert resp.status == 404 and re.fullmatch(r"[0-9a-f]{16}", resp.headers["X-Request-Id"])
        async with session.ws_connect(server.make_url("/ws")) as ws:
            assert ws._response.headers.get("X-Request-Id") is None  # the handshake's headers only
