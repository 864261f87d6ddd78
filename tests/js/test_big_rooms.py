"""The official socket.io-client v4 (node) in a big room: counts, not per-user events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.js.test_js_client import HERE, driver_env, events, of, run
from tests.support.clients import TRANSPORTS, running_server
from tests.support.node import require_node_packages
from tests.support.servers import ServerProcess
from tests.support.tokens import token

CROWD = 30
BIG = 5


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with socket.io-client installed from the lockfile; fail (never skip)."""
    return require_node_packages(HERE, "socket.io-client/package.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("js-big"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_BIG_ROOM_MEMBERS=str(BIG),
        CHATSVC_PRESENCE_COALESCE_MS="500",
        CHATSVC_PING_INTERVAL="1",
        CHATSVC_PING_TIMEOUT="1",
    ) as running:
        yield running


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_crowd_joining_gets_counts_and_coalesced_typing(
    node: str, server: ServerProcess, transport: str
) -> None:
    tokens = [token(f"js-crowd-{i}") for i in range(CROWD)]
    lines = run(node, "crowd", driver_env(server, transport, CHATSVC_TOKENS=json.dumps(tokens)))
    presence = events(lines, "a", "presence")
    per_user = [p for p in presence if "user" in p]
    counts = [p for p in presence if "user" not in p]
    # Joins that found the room still below 5 members went out one by one; no more.
    assert len(per_user) <= BIG - 1, per_user
    assert all(set(p) == {"room", "online"} for p in counts), counts
    assert counts[-1]["online"] == CROWD
    # One count per 500 ms window, however long the burst took on a busy machine: far fewer
    # than one per join (the burst is a few windows long, a pass is a few seconds).
    assert len(counts) <= CROWD // 2, counts
    typing = events(lines, "a", "typing")
    assert all(set(t) == {"room", "users", "count"} and len(t["users"]) <= 3 for t in typing), typing
    assert typing[-1]["count"] == 5
    # Nobody was dropped (ping timeout 1 s) while the burst was served.
    assert all(d["reason"] == "io client disconnect" for d in of(lines, "disconnect")), of(
        lines, "disconnect"
    )
