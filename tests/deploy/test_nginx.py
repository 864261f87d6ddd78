"""A real reverse proxy in front of two replicas: what the Ingress settings are for.

nginx (Debian package) terminates TLS with the test CA on 127.0.0.1 and proxies to two
chatsvc replicas on the real Kafka broker (mTLS listener), configured like the Ingress
(tests/deploy/nginx-test.conf.tmpl includes deploy/nginx/*.conf, which docker-compose
uses too). The clients are the real ``socket.io-client`` v4 in node. nginx's read timeout
is shortened to READ_TIMEOUT seconds so that idleness is shown in seconds.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    BAD_PING_INTERVAL,
    GOOD_PING_INTERVAL,
    READ_TIMEOUT,
    Cluster,
    start_cluster,
)
from tests.deploy.support import NodeClients, http_request, https_request
from tests.support.tokens import token

pytestmark = pytest.mark.integration

#: How long the well-tuned socket stays idle: well past nginx's read timeout.
IDLE_SECONDS = READ_TIMEOUT + 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Cluster]:
    """r1 + r2 (ping 2 s, Kafka, shared data dir) and r3 (ping 10 s) behind one nginx."""
    started = start_cluster(tmp_path_factory.mktemp("nginx-cluster"), pki, mistuned=True)
    yield started
    started.stop()


def _sessions(cluster: Cluster) -> dict[str, set[str]]:
    """Engine.IO session id -> the upstream addresses nginx sent its requests to."""
    assert cluster.nginx is not None
    out: dict[str, set[str]] = {}
    for entry in cluster.nginx.access_log():
        if entry.get("sid") and entry.get("sid") != "-":
            out.setdefault(entry["sid"], set()).add(entry.get("upstream", ""))
    return out


def _upstream(cluster: Cluster, index: int) -> str:
    return f"127.0.0.1:{cluster.replicas[index].port}"


async def test_idle_websocket_outlives_the_read_timeout_only_when_pings_are_more_frequent(
    cluster: Cluster, node: NodeClients
) -> None:
    assert GOOD_PING_INTERVAL < READ_TIMEOUT < BAD_PING_INTERVAL
    await node.open("tuned", cluster.url(), token("idle-a"), transports=["websocket"])
    await node.open("mistuned", cluster.url("MISTUNED_PORT"), token("idle-b"), transports=["websocket"])
    await node.connected("tuned")
    await node.connected("mistuned")
    loop = asyncio.get_running_loop()
    idle_until = loop.time() + IDLE_SECONDS

    # Mistuned: nothing crosses the proxy for READ_TIMEOUT seconds, so nginx cuts the socket
    # long before the Engine.IO heartbeat (ping interval + timeout = 15 s) would notice.
    drop = await node.wait_for(
        lambda e: e.get("name") == "mistuned" and e["type"] == "disconnect",
        within=READ_TIMEOUT + 4,
        what="the mistuned socket being cut by nginx",
    )
    assert drop["reason"] == "transport close", drop
    assert cluster.nginx is not None
    assert "upstream timed out" in cluster.nginx.errors()

    # Tuned: pings every GOOD_PING_INTERVAL s keep it open for the whole idle period...
    await asyncio.sleep(max(0.0, idle_until - loop.time()))
    dropped = node.find(lambda e: e.get("name") == "tuned" and e["type"] == "disconnect")
    assert not dropped, f"the tuned socket was dropped while idle: {dropped}"
    # ... and it still works afterwards, on the same connection.
    ack = await node.emit("tuned", "join", {"room": "idle"})
    assert ack["ok"] is True, ack
    assert len(node.find(lambda e: e.get("name") == "tuned" and e["type"] == "connect")) == 1


async def test_polling_only_clients_work_across_two_replicas_because_of_the_affinity_cookie(
    cluster: Cluster, node: NodeClients
) -> None:
    polling = {"transports": ["polling"], "upgrade": False}
    # Like a browser: no cookie at first, then whatever nginx's Set-Cookie says.
    await node.open("fresh", cluster.url(), token("poll-fresh"), jar=True, **polling)
    # Returning browsers already pinned to replica 1 and to replica 2.
    await node.open("on1", cluster.url(), token("poll-one"), cookie="chatsvc_route=1", **polling)
    await node.open("on2", cluster.url(), token("poll-two"), cookie="chatsvc_route=2", **polling)
    sids = {name: (await node.connected(name))["eio"] for name in ("fresh", "on1", "on2")}
    for name in sids:
        ack = await node.emit(name, "join", {"room": "polling"})
        assert ack["ok"] is True, ack

    # Several round trips per session, each its own HTTP request through nginx.
    for i in range(3):
        ack = await node.emit(
            "on1", "message", {"room": "polling", "text": f"hi {i}", "client_msg_id": f"p{i}"}
        )
        assert ack["ok"] is True, ack
    got = await node.wait_for(
        lambda e: e.get("name") == "on2" and e.get("event") == "message" and e["data"]["text"] == "hi 2",
        what="replica 1's message on a polling client of replica 2",
    )
    assert got["data"]["user"]["id"] == "poll-one"
    history = await node.emit("fresh", "history", {"room": "polling"})
    assert {m["text"] for m in history["messages"]} == {"hi 0", "hi 1", "hi 2"}

    sessions = _sessions(cluster)
    for name, sid in sids.items():
        assert len(sessions.get(sid, ())) == 1, f"{name}'s requests went to {sessions.get(sid)}"
    assert sessions[sids["on1"]] == {_upstream(cluster, 0)}
    assert sessions[sids["on2"]] == {_upstream(cluster, 1)}
    assert not node.find(lambda e: e["type"] in {"disconnect", "connect_error"})


async def test_polling_without_affinity_loses_the_session(cluster: Cluster, node: NodeClients) -> None:
    port = cluster.port("ROUND_ROBIN_PORT")
    ca = cluster.ca
    # The raw exchange: a handshake on one replica, the next request on the other.
    status, _, body = await asyncio.to_thread(https_request, port, "/socket.io/?EIO=4&transport=polling", ca)
    assert status == 200, body
    sid = json.loads(body[1:])["sid"]
    path = f"/socket.io/?EIO=4&transport=polling&sid={urllib.parse.quote(sid)}"
    auth = b"40" + json.dumps({"token": token("rr")}).encode()
    answers = []
    for payload in (auth, b"3", b"3"):
        answers.append(await asyncio.to_thread(https_request, port, path, ca, method="POST", body=payload))
    refused = [(s, b) for s, _, b in answers if s == 400]
    assert refused, f"every request found the session: {[(s, b) for s, _, b in answers]}"
    assert b"Invalid session" in refused[0][1]  # python-engineio's "Session ID unknown"

    # The real client cannot connect at all through it.
    await node.open(
        "rr", f"https://127.0.0.1:{port}", token("rr-client"), transports=["polling"], upgrade=False
    )
    failed = await node.wait_for(
        lambda e: e.get("name") == "rr" and e["type"] in {"connect_error", "connect"},
        what="the round-robin client's outcome",
    )
    assert failed["type"] == "connect_error", failed


async def test_a_message_from_replica_1_reaches_a_client_on_replica_2(
    cluster: Cluster, node: NodeClients
) -> None:
    await node.open("alice", cluster.url(), token("alice"), cookie="chatsvc_route=1")
    await node.open("bob", cluster.url(), token("bob"), cookie="chatsvc_route=2")
    await node.connected("alice")
    await node.connected("bob")
    for name in ("alice", "bob"):
        assert (await node.emit(name, "join", {"room": "cross"}))["ok"] is True

    sent = await node.emit("alice", "message", {"room": "cross", "text": "from r1", "client_msg_id": "x1"})
    got = await node.wait_for(
        lambda e: e.get("name") == "bob" and e.get("event") == "message", what="bob's message"
    )
    assert got["data"]["id"] == sent["message"]["id"]
    assert got["data"]["text"] == "from r1"
    reply = await node.emit("bob", "message", {"room": "cross", "text": "from r2", "client_msg_id": "x2"})
    back = await node.wait_for(
        lambda e: e.get("name") == "alice" and e.get("event") == "message", what="alice's message"
    )
    assert back["data"]["id"] == reply["message"]["id"]

    # The websocket upgrades really went to different replicas (nginx logs a proxied
    # websocket when it closes).
    for name in ("alice", "bob"):
        await node.send(cmd="close", name=name)
    assert cluster.nginx is not None
    nginx = cluster.nginx
    expected = {("1", _upstream(cluster, 0)), ("2", _upstream(cluster, 1))}

    def upgrades() -> set[tuple[str | None, str | None]]:
        return {
            (e.get("route"), e.get("upstream"))
            for e in nginx.access_log()
            if e.get("transport") == "websocket" and e["status"] == "101"
        }

    for _ in range(100):
        if expected <= upgrades():
            break
        await asyncio.sleep(0.1)
    assert expected <= upgrades(), upgrades()


def test_the_public_https_origin_is_accepted_through_the_tls_proxy(cluster: Cluster) -> None:
    port = cluster.port("STICKY_PORT")
    handshake = "/socket.io/?EIO=4&transport=polling"
    public = f"https://127.0.0.1:{port}"

    status, headers, body = https_request(port, handshake, cluster.ca, headers={"Origin": public})
    assert status == 200, body
    assert body.startswith(b"0{")
    assert headers.get("access-control-allow-origin") == public

    status, _, body = https_request(port, handshake, cluster.ca, headers={"Origin": "https://evil.example"})
    assert status == 400, body

    # Without the proxy's X-Forwarded-Proto/Host the replica sees http://, not our origin.
    status, _, body = http_request(cluster.replicas[0].port, handshake, headers={"Origin": public})
    assert status == 400, body
