"""Spam filters on a real server (issue 25), python-socketio clients: each rule refusing
with ``spam`` and its ``rule`` (nothing stored, nothing delivered, counted), and passing
just under its threshold; the blocklist's mask delivered and stored masked; edits screened."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import ChatClient, ClientPool, running_server
from tests.support.replicas import FAST
from tests.support.servers import ServerProcess
from tests.support.tokens import token

WINDOW_SECONDS = 2
RULES = {
    "CHATSVC_SPAM_MAX_LINKS": "2",
    "CHATSVC_SPAM_MAX_MENTIONS": "2",
    "CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS": str(WINDOW_SECONDS),
    "CHATSVC_SPAM_LINK_MIN_TOKEN_AGE_MINUTES": "5",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("spam")
    words = directory / "blocklist.txt"
    words.write_text("# test words\nrug pull\nre:\\bpump(ing|ers)?\\b\n")
    with running_server(directory, CHATSVC_SPAM_BLOCKLIST_FILE=str(words), **RULES, **FAST) as running:
        yield running


@pytest.fixture(scope="module")
def masking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("spam-mask")
    words = directory / "blocklist.txt"
    words.write_text("rug pull\nre:\\bpump(ing|ers)?\\b\n")
    env = {"CHATSVC_SPAM_BLOCKLIST_FILE": str(words), "CHATSVC_SPAM_BLOCKLIST_ACTION": "mask", **FAST}
    with running_server(directory, "mask", **env) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def aged_token(sub: str) -> str:
    """A token issued an hour ago (the token-age rule does not apply to it)."""
    return token(sub, iat=int(time.time()) - 3600)


async def spam_rule(client: ChatClient, event: str, body: dict[str, Any]) -> str:
    ack = await client.call(event, body)
    # The error ack's shape, plus the stable ``rule`` field.
    assert set(ack) == {"ok", "error"} and ack["ok"] is False, ack
    assert set(ack["error"]) == {"code", "message", "rule"} and ack["error"]["code"] == "spam", ack
    assert "Traceback" not in ack["error"]["message"]
    assert ack["error"]["rule"] in ack["error"]["message"]
    return str(ack["error"]["rule"])


def refused_counts(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^chatsvc_spam_refused_total\{rule="([^"]+)"\} (\S+)$', text, re.M)
    }


async def pair(server: ServerProcess, clients: ClientPool) -> tuple[ChatClient, ChatClient, str]:
    room = f"spam-{uuid.uuid4().hex[:8]}"
    sender = await clients.connect(server.url, aged_token(user("pumper")))
    reader = await clients.connect(server.url, aged_token(user("reader")))
    for c in (sender, reader):
        await c.ok("join", {"room": room})
    return sender, reader, room


async def texts_of(client: ChatClient, room: str) -> list[str]:
    return [m["text"] for m in (await client.ok("history", {"room": room}))["messages"]]


async def test_links_and_mentions_refused_past_their_maximum_only(
    server: ServerProcess, clients: ClientPool
) -> None:
    sender, reader, room = await pair(server, clients)
    before = refused_counts(server)
    await sender.ok("message", {"room": room, "text": "see a.example.com and https://b.example/x"})
    assert await spam_rule(sender, "message", {"room": room, "text": "a.com b.com www.c.example"}) == "links"
    await sender.ok("message", {"room": room, "text": "hi you two", "mentions": [user("m"), user("m")]})
    three = [user("m") for _ in range(3)]
    assert (
        await spam_rule(sender, "message", {"room": room, "text": "hi you three", "mentions": three})
        == "mentions"
    )
    assert await texts_of(reader, room) == ["hi you two", "see a.example.com and https://b.example/x"]
    delivered = [m["text"] for m in reader.pending("message")]
    assert "a.com b.com www.c.example" not in delivered and "hi you three" not in delivered
    after = refused_counts(server)
    assert after["links"] == before.get("links", 0) + 1 and after["mentions"] == before.get("mentions", 0) + 1


async def test_links_from_a_young_token_refused_an_old_one_passes(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"spam-{uuid.uuid4().hex[:8]}"
    fresh = await clients.connect(server.url, token(user("fresh"), iat=int(time.time()) - 240))
    await fresh.ok("join", {"room": room})
    assert (
        await spam_rule(fresh, "message", {"room": room, "text": "join signals.xyz now"}) == "new_token_links"
    )
    await fresh.ok("message", {"room": room, "text": "just words from a new account"})
    old = await clients.connect(server.url, token(user("old"), iat=int(time.time()) - 301))
    await old.ok("join", {"room": room})
    await old.ok("message", {"room": room, "text": "my blog: notes.example.com"})


async def test_the_same_text_across_rooms_within_the_window_is_refused(
    server: ServerProcess, clients: ClientPool
) -> None:
    sender, reader, room = await pair(server, clients)
    other = f"spam-{uuid.uuid4().hex[:8]}"
    await sender.ok("join", {"room": other})
    text = "Load up on $XYZ before the news!!"
    first = await sender.ok("message", {"room": room, "text": text, "client_msg_id": "c1"})
    retry = await sender.ok("message", {"room": room, "text": text, "client_msg_id": "c1"})
    assert retry["duplicate"] is True and retry["message"]["id"] == first["message"]["id"]
    copy = {"room": other, "text": "load up on XYZ before the news"}
    assert await spam_rule(sender, "message", copy) == "duplicate"
    await sender.ok("message", {"room": other, "text": "ok!!!"})  # short texts never count
    await sender.ok("message", {"room": other, "text": "ok!!!"})
    await asyncio.sleep(WINDOW_SECONDS + 0.3)
    await sender.ok("message", copy)  # the window passed
    # The refused copy was never stored: the one after the window is the only one.
    assert await texts_of(reader, other) == [copy["text"], "ok!!!", "ok!!!"]


async def test_blocklist_rejects_and_edits_are_screened_too(
    server: ServerProcess, clients: ClientPool
) -> None:
    sender, reader, room = await pair(server, clients)
    assert (
        await spam_rule(sender, "message", {"room": room, "text": "classic RUG  PULL incoming"})
        == "blocklist"
    )
    assert await spam_rule(sender, "message", {"room": room, "text": "stop pumping"}) == "blocklist"
    posted = (await sender.ok("message", {"room": room, "text": "a rugged pumpkin"}))["message"]
    edit = {"room": room, "id": posted["id"], "text": "now a rug pull"}
    assert await spam_rule(sender, "edit", edit) == "blocklist"
    edit_links = {"room": room, "id": posted["id"], "text": "x.com y.com z.com"}
    assert await spam_rule(sender, "edit", edit_links) == "links"
    assert await texts_of(reader, room) == ["a rugged pumpkin"]
    edited = await sender.ok("edit", {"room": room, "id": posted["id"], "text": "a rugged pumpkin, edited"})
    assert edited["message"]["text"] == "a rugged pumpkin, edited"


async def test_blocklist_mask_delivers_and_stores_the_masked_text(
    masking: ServerProcess, clients: ClientPool
) -> None:
    sender, reader, room = await pair(masking, clients)
    ack = await sender.ok("message", {"room": room, "text": "Rug pull by the pumpers, beware"})
    assert ack["message"]["text"] == "******** by the *******, beware"
    live = await reader.next("message", where=lambda m: m["id"] == ack["message"]["id"])
    assert live["text"] == "******** by the *******, beware"
    assert await texts_of(reader, room) == ["******** by the *******, beware"]
    # A blocked word hidden with a zero-width space cannot be starred in place: refused.
    assert await spam_rule(sender, "message", {"room": room, "text": "rug\u200b pull"}) == "blocklist"
