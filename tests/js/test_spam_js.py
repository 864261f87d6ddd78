"""Spam filters and edit re-extraction with the official socket.io-client v4 (node)
(issue 25): each rule refusing with ``spam`` and its ``rule`` and passing just under its
threshold, the blocklist mask seen by a python client, an edit's new mention reaching a
python client."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}
RULES = {
    "CHATSVC_SPAM_MAX_LINKS": "1",
    "CHATSVC_SPAM_MAX_MENTIONS": "1",
    "CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS": "60",
    "CHATSVC_SPAM_LINK_MIN_TOKEN_AGE_MINUTES": "10",
    "CHATSVC_SPAM_BLOCKLIST_ACTION": "mask",
}


def refused_by(ack: dict[str, Any]) -> str:
    assert ack["ok"] is False and set(ack["error"]) == {"code", "message", "rule"}, ack
    assert ack["error"]["code"] == "spam"
    return str(ack["error"]["rule"])


async def test_each_rule_refuses_from_socket_io_client(
    server_factory: ServerFactory, node: NodeClients, tmp_path: Path
) -> None:
    words = tmp_path / "words.txt"
    words.write_text("rug pull\n")
    server = server_factory(CHATSVC_SPAM_BLOCKLIST_FILE=str(words), **RULES, **FAST)
    room = f"spjs-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    await node.open("p", server.url, token(f"js-p-{tag}", iat=int(time.time()) - 3600))
    await node.open("y", server.url, token(f"js-y-{tag}", iat=int(time.time()) - 60))
    for name in ("p", "y"):
        await node.connected(name)
        assert (await node.emit(name, "join", {"room": room}))["ok"] is True

    async def send(name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await node.emit(name, "message", {"room": room, **body})

    assert (await send("p", {"text": "one link: a.example.com"}))["ok"] is True
    assert refused_by(await send("p", {"text": "two: a.example.com b.example.com"})) == "links"
    assert (await send("p", {"text": "hi one", "mentions": ["u1"]}))["ok"] is True
    assert refused_by(await send("p", {"text": "hi two", "mentions": ["u1", "u2"]})) == "mentions"
    assert refused_by(await send("y", {"text": "new here: a.example.com"})) == "new_token_links"
    assert (await send("y", {"text": "new here, no links"}))["ok"] is True
    assert (await send("p", {"text": "New here, no links!"}))["ok"] is True  # another user's: fine
    assert refused_by(await send("y", {"text": "NEW here no links"})) == "duplicate"
    async with ClientPool() as pool:
        reader = await pool.connect(server.url, token(f"py-r-{tag}"))
        await reader.ok("join", {"room": room})
        masked = await send("p", {"text": "a Rug Pull, again"})
        assert masked["ok"] is True and masked["message"]["text"] == "a ********, again"
        seen = await reader.next("message", where=lambda m: m["id"] == masked["message"]["id"])
        assert seen["text"] == "a ********, again"
        texts = [m["text"] for m in (await reader.ok("history", {"room": room}))["messages"]]
    assert texts == [
        "a ********, again",
        "New here, no links!",
        "new here, no links",
        "hi one",
        "one link: a.example.com",
    ]


async def test_an_edit_from_socket_io_client_tells_the_newly_mentioned(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**FAST)
    room = f"edjs-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    bob, carol = f"py-bob-{tag}", f"py-carol-{tag}"
    await node.open("a", server.url, token(f"js-a-{tag}"))
    await node.connected("a")
    assert (await node.emit("a", "join", {"room": room}))["ok"] is True
    async with ClientPool() as pool:
        b = await pool.connect(server.url, token(bob))
        c = await pool.connect(server.url, token(carol))
        posted = (await node.emit("a", "message", {"room": room, "text": "hi", "mentions": [bob]}))["message"]
        await b.next("mention")
        edit = {"room": room, "id": posted["id"], "text": "hi both", "mentions": [bob, carol]}
        ack = await node.emit("a", "edit", edit)
        assert ack["ok"] is True and ack["message"]["mentions"] == [bob, carol]
        assert (await c.next("mention"))["message"]["text"] == "hi both"
        await asyncio.sleep(0.3)
        assert b.pending("mention") == []
        bad = await node.emit("a", "edit", {**edit, "mentions": "everyone"})
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_payload"


async def test_the_blocklist_rejects_from_socket_io_client(
    server_factory: ServerFactory, node: NodeClients, tmp_path: Path
) -> None:
    """The blocklist's other action (``reject``), a post and an edit refused, nothing stored."""
    words = tmp_path / "words.txt"
    words.write_text("rug pull\n")
    server = server_factory(
        CHATSVC_SPAM_BLOCKLIST_FILE=str(words), CHATSVC_SPAM_BLOCKLIST_ACTION="reject", **FAST
    )
    room = f"bljs-{uuid.uuid4().hex[:8]}"
    await node.open("p", server.url, token(f"js-p-{uuid.uuid4().hex[:6]}"))
    await node.connected("p")
    assert (await node.emit("p", "join", {"room": room}))["ok"] is True
    refused = await node.emit("p", "message", {"room": room, "text": "a RUG  pull, again"})
    assert refused_by(refused) == "blocklist"
    posted = await node.emit("p", "message", {"room": room, "text": "a rugged pumpkin"})
    assert posted["ok"] is True
    edit = {"room": room, "id": posted["message"]["id"], "text": "now a rug pull"}
    assert refused_by(await node.emit("p", "edit", edit)) == "blocklist"
    page = await node.emit("p", "history", {"room": room})
    assert [m["text"] for m in page["messages"]] == ["a rugged pumpkin"]
