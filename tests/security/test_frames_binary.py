"""Issue 22 item 3: binary attachments. chatsvc has no binary payloads, so BINARY_EVENT and
BINARY_ACK are refused from their header, nothing is buffered between frames, and text
frames after them are handled as packets (a real server process, raw frames)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.clients import FAST_PATH_MODES, assert_error_ack, fast_paths_env, running_server
from tests.support.raw import (
    RawPolling,
    RawWebSocket,
    ack_of,
    bad_packet_counts,
    server_rss_kb,
    traceback_free,
)
from tests.support.servers import ServerProcess
from tests.support.tokens import token

PLACEHOLDER = {"_placeholder": True, "num": 0}


@pytest.fixture(scope="module", params=FAST_PATH_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("binary"),
        **fast_paths_env(request.param),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def _event(kind: str, ack_id: int | str, name: str, data: object, attachments: str = "") -> str:
    return f"{kind}{attachments}{ack_id}" + json.dumps([name, data])


async def test_binary_event_is_refused_with_an_ack_and_later_frames_are_packets(
    server: ServerProcess,
) -> None:
    before = bad_packet_counts(server).get("binary", 0)
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, server)
        await ws.connect(token("bin-ws"))
        await ws.ws.send_str(_event("42", 1, "join", {"room": "bin"}))
        assert (await ws.ack(1))["ok"] is True
        await ws.ws.send_str(_event("45", 7, "message", {"room": "bin", "text": PLACEHOLDER}, "1-"))
        assert_error_ack(await ws.ack(7), "invalid_payload")
        # Its attachment, then a text event: upstream took the event as the attachment.
        await ws.ws.send_bytes(b"\x00" * 1000)
        await ws.ws.send_str(_event("42", 8, "message", {"room": "bin", "text": "after"}))
        sent = await ws.ack(8)
        assert sent["ok"] is True and sent["message"]["text"] == "after", sent
        # A binary ack (the server asks for none) is dropped, without an answer.
        await ws.ws.send_str("461-5" + json.dumps([PLACEHOLDER]))
        await ws.ws.send_str(_event("42", 9, "message", {"room": "bin", "text": "still"}))
        frames = await ws.until(lambda p: p.startswith("439["))
        assert not any(f.startswith("435") for f in frames)
        await ws.ws.close()
    assert bad_packet_counts(server).get("binary", 0) >= before + 3


async def test_announced_attachments_are_never_accumulated(server: ServerProcess) -> None:
    """999,999 announced attachments and 12 MB of binary frames after them: nothing is kept
    (upstream pinned hundreds of MB on the socket until it disconnected)."""
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, server)
        await ws.connect(token("bin-flood"))
        await ws.ws.send_str(_event("42", 1, "join", {"room": "flood"}))
        assert (await ws.ack(1))["ok"] is True
        chunk = b"\xab" * 60_000
        for _ in range(20):  # warm up aiohttp's reader and the allocator
            await ws.ws.send_bytes(chunk)
        await ws.ws.send_str(_event("42", 2, "message", {"room": "flood", "text": "warm"}))
        assert (await ws.ack(2))["ok"] is True
        baseline = server_rss_kb(server)
        await ws.ws.send_str(_event("45", "", "message", {"room": "flood", "text": PLACEHOLDER}, "999999-"))
        for _ in range(200):
            await ws.ws.send_bytes(chunk)
        await ws.ws.send_str(_event("42", 3, "message", {"room": "flood", "text": "through"}))
        sent = await ws.ack(3, within=20)
        assert sent["ok"] is True, sent
        grown = server_rss_kb(server) - baseline
        await ws.ws.close()
    assert grown < 8 * 1024, f"RSS grew {grown} KiB while 12 MB of attachments were sent"


async def test_binary_packets_over_polling_are_refused_in_the_same_batch(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        session = await RawPolling(http, server).open()
        await session.connect(token("bin-poll"))
        batch = "\x1e".join(
            [
                _event("42", 1, "join", {"room": "binpoll"}),
                _event("45", 2, "message", {"room": "binpoll", "text": [PLACEHOLDER, PLACEHOLDER]}, "2-"),
                "bAAECAw==",  # one of its two attachments, base64: upstream took the next text too
                _event("42", 3, "message", {"room": "binpoll", "text": "after"}),
            ]
        )
        status, _ = await session.post(batch)
        assert status == 200
        packets = await session.until(lambda p: p.startswith("433["))
        assert ack_of(packets, 1)["ok"] is True
        assert_error_ack(ack_of(packets, 2), "invalid_payload")
        assert ack_of(packets, 3)["message"]["text"] == "after"


async def test_the_log_has_no_traceback(server: ServerProcess) -> None:
    await asyncio.sleep(0)
    assert traceback_free(server.log_text()), server.log_tail(40)
