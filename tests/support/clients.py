"""python-socketio clients for integration tests, plus module-scoped test servers.

``ChatClient`` records every event it receives into per-event queues so a test can
await "the next ``message``" with a bound, and ``call`` wraps an event with its ack.
``ClientPool`` disconnects every client it made when the test ends.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import engineio
import socketio

from tests.support.servers import ServerProcess, base_env, free_port

#: Every wait in the chat tests is bounded by this (seconds).
WAIT = 5.0

TRANSPORTS = ("websocket", "polling")

#: Where a client can put its token: auth payload raw / with "Bearer ", header, query.
TOKEN_PLACES = ("auth", "auth_bearer", "header", "query")


class ChatClient:
    """One Socket.IO connection that remembers what the server sent it."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, request_timeout=WAIT)
        self._queues: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.connect_errors: list[Any] = []
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self._outcome = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("connect", self._connect)
        self.sio.on("connect_error", self._connect_error)
        self.sio.on("disconnect", self._disconnect)

    async def _record(self, event: str, *args: Any) -> None:
        self._queues[event].put_nowait(args[0] if len(args) == 1 else list(args))

    async def _connect(self) -> None:
        self.connected.set()
        self._outcome.set()

    async def _connect_error(self, data: Any = None) -> None:
        self.connect_errors.append(data)
        self._outcome.set()

    async def _disconnect(self, reason: Any = None) -> None:
        self.disconnected.set()

    @property
    def transport(self) -> str | None:
        return self.sio.transport()  # type: ignore[no-any-return]

    async def connect(
        self,
        url: str,
        token: str | None,
        *,
        where: str = "auth",
        transport: str = "websocket",
        headers: dict[str, str] | None = None,
        auth: Any = None,
    ) -> None:
        """Connect with ``token`` placed ``where`` (one of :data:`TOKEN_PLACES`)."""
        all_headers = dict(headers or {})
        if token is not None:
            if where == "auth":
                auth = {"token": token}
            elif where == "auth_bearer":
                auth = {"token": f"Bearer {token}"}
            elif where == "header":
                all_headers["Authorization"] = f"Bearer {token}"
            elif where == "query":
                url = f"{url}/?token={quote(token)}"
            else:
                raise ValueError(where)
        # wait=False: on a refusal the client's own wait path ends in a slow polling
        # disconnect (see close()); the outcome is awaited here instead.
        await self.sio.connect(url, headers=all_headers, auth=auth, transports=[transport], wait=False)
        async with asyncio.timeout(WAIT):
            await self._outcome.wait()
        if not self.connected.is_set():
            await self.disconnect()
            raise socketio.exceptions.ConnectionError(f"refused: {self.connect_errors[-1]!r}")

    async def call(self, event: str, data: Any = None, *, within: float = WAIT) -> Any:
        """Emit ``event`` and return its ack."""
        return await self.sio.call(event, data, timeout=within)

    async def ok(self, event: str, data: Any = None) -> dict[str, Any]:
        """Emit ``event`` and assert the ack is ``{"ok": true, ...}``."""
        ack = await self.call(event, data)
        assert isinstance(ack, dict) and ack.get("ok") is True, f"{event} {data!r} -> {ack!r}"
        return ack

    async def error(self, event: str, data: Any = None) -> str:
        """Emit ``event``, assert a well-formed error ack, return its code."""
        ack = await self.call(event, data)
        assert_error_ack(ack)
        return str(ack["error"]["code"])

    async def next(
        self, event: str, *, where: Callable[[Any], bool] | None = None, within: float = WAIT
    ) -> Any:
        """The next ``event`` received (matching ``where``); fail after ``within`` seconds."""
        queue = self._queues[event]
        async with asyncio.timeout(within):
            while True:
                data = await queue.get()
                if where is None or where(data):
                    return data

    def pending(self, event: str) -> list[Any]:
        """Everything of ``event`` received and not yet taken with :meth:`next`."""
        queue = self._queues[event]
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def disconnect(self) -> None:
        """Close the connection, over polling without waiting out the last long-poll.

        python-engineio's polling client sends CLOSE and then waits for its pending GET,
        which the server only answers after ping_interval + ping_timeout. Here the CLOSE
        (and the namespace DISCONNECT) is flushed first, then the GET is abandoned.
        """
        eio = self.sio.eio
        try:
            async with asyncio.timeout(WAIT):
                if eio.state != "connected" or eio.current_transport != "polling":
                    await self.sio.disconnect()
                    return
                for namespace in list(self.sio.namespaces):
                    await self.sio._send_packet(
                        self.sio.packet_class(socketio.packet.DISCONNECT, namespace=namespace)
                    )
                await eio._send_packet(engineio.packet.Packet(engineio.packet.CLOSE))
                await eio.queue.join()  # every queued packet has been POSTed
                loops = [t for t in (eio.read_loop_task, eio.write_loop_task) if t is not None]
                await eio.disconnect(abort=True)
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
        except TimeoutError:
            pass


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, *, within: float = 10.0) -> None:
    """Poll ``check`` every 0.1 s until it is true; fail naming ``what`` after ``within`` s."""
    for _ in range(max(1, int(within / 0.1))):
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s")


def assert_error_ack(ack: Any, code: str | None = None) -> None:
    """``{"ok": false, "error": {"code", "message"}}`` and nothing that looks like a trace."""
    assert isinstance(ack, dict), ack
    assert ack.get("ok") is False, ack
    assert set(ack) == {"ok", "error"}, ack
    error = ack["error"]
    # slow_mode (issue 25) also says when to retry.
    extra = {"retry_after_ms"} if error.get("code") == "slow_mode" else set()
    assert set(error) == {"code", "message", *extra}, ack
    assert isinstance(error["code"], str) and isinstance(error["message"], str), ack
    text = json.dumps(ack)
    assert "Traceback" not in text and 'File "' not in text and ".py" not in text, ack
    if code is not None:
        assert error["code"] == code, ack


class ClientPool:
    """Makes clients and disconnects them all on exit."""

    def __init__(self) -> None:
        self._clients: list[ChatClient] = []

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.disconnect() for c in self._clients), return_exceptions=True)

    def new(self) -> ChatClient:
        client = ChatClient()
        self._clients.append(client)
        return client

    async def connect(
        self, url: str, token: str | None, *, where: str = "auth", transport: str = "websocket", **kw: Any
    ) -> ChatClient:
        """A connected client (fails the test if the server refuses)."""
        client = self.new()
        await client.connect(url, token, where=where, transport=transport, **kw)
        return client

    async def refused(
        self, url: str, token: str | None, *, where: str = "auth", transport: str = "websocket", **kw: Any
    ) -> dict[str, Any]:
        """Connect expecting a refusal; return the ``connect_error`` data ``{code, message}``."""
        client = self.new()
        try:
            await client.connect(url, token, where=where, transport=transport, **kw)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("the server accepted a connection it should have refused")
        assert client.connect_errors, "refused without a connect_error"
        error = client.connect_errors[-1]
        assert isinstance(error, dict) and isinstance(error.get("data"), dict), error
        data: dict[str, Any] = error["data"]
        assert set(data) == {"code", "message"}, data
        assert error["message"] == data["message"]
        return data


#: A server with its transport fast paths on (the default) or all off
#: (``CHATSVC_FAST_PATHS=false``): the security bounds must hold either way.
FAST_PATH_MODES = ("fast-paths", "stock-paths")


def fast_paths_env(mode: str) -> dict[str, str]:
    """The environment of a server in ``mode`` (one of :data:`FAST_PATH_MODES`)."""
    return {} if mode == "fast-paths" else {"CHATSVC_FAST_PATHS": "false"}


@contextmanager
def running_server(directory: Path, name: str = "server", **env: str) -> Iterator[ServerProcess]:
    """A chatsvc process for a whole module (tests that share it must not interfere)."""
    full = base_env(directory / f"{name}-data", free_port())
    # Polling clients leave a long-poll GET the server only answers at its ping timeout;
    # a short shutdown bound keeps stopping a module's server quick.
    full["CHATSVC_SHUTDOWN_TIMEOUT"] = "1"
    full.update(env)
    server = ServerProcess(full, directory / f"{name}.log").start()
    try:
        yield server
    finally:
        server.stop()
