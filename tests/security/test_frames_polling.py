"""Issue 22 item 2: a long-polling POST over the buffer limit, or otherwise unusable, is
answered at once and frees everything (a real server process, raw HTTP)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.clients import FAST_PATH_MODES, ClientPool, fast_paths_env, running_server
from tests.support.raw import RawPolling, bad_packet_counts, server_rss_kb, traceback_free
from tests.support.servers import ServerProcess
from tests.support.tokens import token

LIMIT = 65536
#: Each refusal must come this fast (seconds): generous for a loaded 2-core machine, and
#: far below the ping interval + timeout a hanging POST would wait.
ANSWER_WITHIN = 3.0


@pytest.fixture(scope="module", params=FAST_PATH_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("polling"),
        **fast_paths_env(request.param),
        CHATSVC_MAX_HTTP_BUFFER_BYTES=str(LIMIT),
    ) as running:
        yield running


async def _oversize(http: aiohttp.ClientSession, server: ServerProcess, body: bytes) -> float:
    """Open a session, POST ``body`` to it; assert a prompt, small 413; return the seconds."""
    session = await RawPolling(http, server).open()
    started = time.monotonic()
    status, text = await session.post(body, within=ANSWER_WITHIN)
    took = time.monotonic() - started
    assert status == 413, text
    assert len(text) < 300 and json.loads(text)["code"] == "too_large", text
    # The session is over: its sid answers 400 from now on.
    status, _ = await session.get(within=ANSWER_WITHIN)
    assert status == 400
    return took


async def test_oversize_posts_are_answered_at_once_and_leave_no_memory(server: ServerProcess) -> None:
    body = b"4" + b"x" * (LIMIT + 10_000)
    async with aiohttp.ClientSession() as http:

        async def batch(count: int) -> list[float]:
            return await asyncio.gather(*(_oversize(http, server, body) for _ in range(count)))

        for _ in range(3):  # warm up: the allocator's arenas, aiohttp's buffers
            await batch(20)
        baseline = server_rss_kb(server)
        took: list[float] = []
        for _ in range(25):  # 500 requests: about 37 MB if each kept 75 KB as before
            took += await batch(20)
        await asyncio.sleep(0.5)
        grown = server_rss_kb(server) - baseline
    assert max(took) < ANSWER_WITHIN
    assert grown < 12 * 1024, f"RSS grew {grown} KiB over 500 refused POSTs"
    assert bad_packet_counts(server).get("too_large", 0) >= 560
    log = server.log_text()
    assert traceback_free(log), log[-3000:]


async def test_a_pending_poll_gets_the_close_when_its_session_is_refused(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        session = await RawPolling(http, server).open()
        poll = asyncio.ensure_future(session.get(within=ANSWER_WITHIN))
        await asyncio.sleep(0.3)  # the poll is waiting in the server
        status, _ = await session.post(b"4" + b"y" * (LIMIT + 1), within=ANSWER_WITHIN)
        assert status == 413
        status, packets = await poll
        assert status == 200 and packets == ["1"], packets  # CLOSE


async def test_a_post_without_content_length_is_refused_at_once(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        session = await RawPolling(http, server).open()
        path = session.url.split(str(server.port), 1)[1]
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_WITHIN) as raw:
        raw.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"10000\r\n"
            + b"z" * 0x10000
        )
        head = raw.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 411"), head


@pytest.mark.parametrize(
    "body",
    [
        "2",  # a PING: clients may not send it (python-engineio then waited forever to close)
        "0",  # an OPEN
        "6",  # a NOOP
        "9x",  # no such packet type
    ],
)
async def test_unexpected_packet_types_in_a_post_are_counted_and_answered(
    server: ServerProcess, body: str
) -> None:
    before = bad_packet_counts(server).get("eio_unexpected", 0)
    async with aiohttp.ClientSession() as http:
        session = await RawPolling(http, server).open()
        status, _ = await session.post(body, within=ANSWER_WITHIN)
    assert status == 200
    assert bad_packet_counts(server).get("eio_unexpected", 0) == before + 1


@pytest.mark.parametrize("body", [b"x1", b"", b"bA", b"\xff\xfe", b"4" + b"[" * 5000, b"42\x1e" * 600])
async def test_undecodable_posts_are_refused_with_400_and_no_traceback(
    server: ServerProcess, body: bytes
) -> None:
    async with aiohttp.ClientSession() as http:
        session = await RawPolling(http, server).open()
        status, text = await session.post(body, within=ANSWER_WITHIN)
        if body == b"":
            assert status == 200  # an empty payload is no packet at all
            return
        assert status == 400, text
        assert json.loads(text)["code"] == "bad_payload"
    assert traceback_free(server.log_text())


async def test_a_normal_polling_client_still_works(server: ServerProcess) -> None:
    async with ClientPool() as pool:
        client = await pool.connect(server.url, token("poller"), transport="polling")
        await client.ok("join", {"room": "lobby"})
        sent = await client.ok("message", {"room": "lobby", "text": "hello"})
        assert sent["message"]["text"] == "hello"


async def test_jsonp_is_refused_so_its_oversize_post_cannot_hang(server: ServerProcess) -> None:
    """python-engineio's JSONP POST took the branch that hung on an oversize body."""
    async with aiohttp.ClientSession() as http:
        session = await RawPolling(http, server).open()
        async with http.post(
            session.url + "&j=0",
            data=b"d=" + b"4" * (LIMIT + 1),
            timeout=aiohttp.ClientTimeout(total=ANSWER_WITHIN),
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "bad_request"
