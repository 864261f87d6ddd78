"""A TCP proxy on 127.0.0.1 that can cut every connection through it: a network drop as
both ends see it, for any transport (a websocket's server sees the connection end; a
polling session ends at the server's ping timeout), without the client closing anything."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Cutter:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``; :meth:`cut` drops every
    connection and refuses new ones until :meth:`mend`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.down = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Cutter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(dst)
            dst.transport.abort()

    def cut(self) -> None:
        """Drop every connection (a reset, no close handshake) and refuse new ones."""
        self.down = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def mend(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def cutter(target: int) -> AsyncIterator[Cutter]:
    """A running :class:`Cutter` in front of ``target``, closed afterwards."""
    proxy = await Cutter(target).start()
    try:
        yield proxy
    finally:
        await proxy.close()
