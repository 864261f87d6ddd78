"""Issue 22 item 5: a client's garbage is not amplified into the log. Malformed Engine.IO and
Socket.IO packets of many kinds, over websocket and polling, against a real server process:
no traceback, a few lines at most, every packet counted in chatsvc_bad_packets_total."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.clients import FAST_PATH_MODES, ClientPool, fast_paths_env, running_server
from tests.support.raw import RawPolling, RawWebSocket, bad_packet_counts, traceback_free
from tests.support.servers import ServerProcess
from tests.support.tokens import token

#: Malformed packets (Engine.IO text; the Socket.IO ones behind a "4"), each 1-12 bytes.
GARBAGE = [
    "x",
    "9abc",
    "0",
    "6",
    "bA",
    "4",
    "4x",
    "49",
    "444{}",
    "442[",
    "442{}",
    "442[]",
    "442[1]",
    '442/nope,["m"]',
    "443[]",
    "4433[1]",
    "4461-[{}]",
    "44\u00b2[]",
    "4" + "4" * 3,
]

ROUNDS = 12  # x 19 kinds = 228 packets per transport


@pytest.fixture(scope="module", params=FAST_PATH_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("logs"), **fast_paths_env(request.param)) as running:
        yield running


def _chatsvc_lines(log: str) -> list[str]:
    """Log lines other than the access log's one per HTTP request."""
    return [line for line in log.splitlines() if line and " aiohttp.access: " not in line]


async def test_garbage_over_both_transports_is_counted_not_logged(server: ServerProcess) -> None:
    before_log = server.log_text()
    before = sum(bad_packet_counts(server).values())
    sent = 0
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, server)
        await ws.connect(token("garbage-ws"))
        for _ in range(ROUNDS):
            for frame in GARBAGE:
                await ws.ws.send_str(frame)
                sent += 1
            await ws.ws.send_bytes(b"\x00\x01\x02\x03\x04\x05\x06\x07")
            sent += 1
        # The connection survived all of it. A flood past CHATSVC_MAX_PENDING_EVENTS is
        # refused (counted as pending_full) until the connection's worker catches up.
        for ack_id in range(1, 50):
            await ws.ws.send_str(f'42{ack_id}["join",{{"room":"still"}}]')
            answer = await ws.ack(ack_id)
            if answer["ok"] is True:
                break
            assert answer["error"]["code"] == "rate_limited", answer
            sent += 1  # refused as pending_full: counted like the garbage
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the connection never caught up with the flood")
        await ws.ws.close()

        session = await RawPolling(http, server).open()
        await session.connect(token("garbage-poll"))
        for _ in range(ROUNDS):
            # One POST per packet: a batch with an undecodable packet is refused as a whole.
            for frame in GARBAGE:
                if frame in ("x", "bA"):
                    continue  # those end a polling session (400): sent on fresh sessions below
                status, _ = await session.post(frame)
                assert status == 200
                sent += 1
        for frame in ("x", "bA") * ROUNDS:
            fresh = await RawPolling(http, server).open()
            status, _ = await fresh.post(frame)
            assert status == 400
            sent += 1

    after = sum(bad_packet_counts(server).values())
    # A CONNECT for an unknown namespace is answered CONNECT_ERROR, not counted: none here.
    assert after - before == sent, bad_packet_counts(server)
    log = server.log_text()
    assert traceback_free(log), log[-4000:]
    new_lines = _chatsvc_lines(log[len(before_log) :])
    assert len(new_lines) <= 12, "\n".join(new_lines)
    assert sum(len(line) for line in new_lines) < 3000


async def test_a_normal_client_is_unaffected(server: ServerProcess) -> None:
    async with ClientPool() as pool:
        for transport in ("websocket", "polling"):
            client = await pool.connect(server.url, token(f"normal-{transport}"), transport=transport)
            await client.ok("join", {"room": "calm"})
            await client.ok("message", {"room": "calm", "text": f"over {transport}"})
