"""Spam filters on two replicas over the real Kafka broker and the real CQL node (issue
25): flags caught on either replica are listed by ListFlagged on the other (the store is
shared); the duplicate rule holds across them (a copy through the other replica is refused
too, once that replica applied the first: chatsvc.chat.crossposts)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import admin_client
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.replicas import start_replicas, until_delivered
from tests.support.tokens import token


async def test_flags_from_both_replicas_listed_on_either(
    server_factory: ServerFactory,
    cql_keyspace: dict[str, str],
    tmp_path: Path,
) -> None:
    words = tmp_path / "words.txt"
    words.write_text("moonshot\n")
    a, b = start_replicas(
        server_factory,
        cql_keyspace,
        CHATSVC_SPAM_MAX_LINKS="0",
        CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS="60",
        CHATSVC_SPAM_BLOCKLIST_FILE=str(words),
        CHATSVC_SPAM_BLOCKLIST_ACTION="mask",
    )
    room, spammer = f"cl-{uuid.uuid4().hex[:8]}", f"spammer-{uuid.uuid4().hex[:8]}"
    async with ClientPool() as pool:
        on_a = await pool.connect(a.url, token(spammer, iat=int(time.time()) - 3600))
        on_b = await pool.connect(b.url, token(spammer, iat=int(time.time()) - 3600))
        reader = await pool.connect(a.url, token(f"reader-{uuid.uuid4().hex[:6]}"))
        for client in (on_a, on_b, reader):
            await client.ok("join", {"room": room})
        await until_delivered(on_b, reader, room)
        refused = await on_a.call("message", {"room": room, "text": "buy at pump.xyz"})
        assert refused["error"]["rule"] == "links"
        masked = (await on_b.ok("message", {"room": room, "text": "a MOONSHOT, trust me"}))["message"]
        seen = await reader.next("message", where=lambda m: m["id"] == masked["id"])
        assert seen["text"] == "a ********, trust me"
        copy = {"room": room, "text": "the same long text twice"}
        first = (await on_a.ok("message", copy))["message"]
        assert (await on_a.call("message", copy))["error"]["rule"] == "duplicate"
        await on_b.next("message", where=lambda m: m["id"] == first["id"])  # B applied it
        assert (await on_b.call("message", copy))["error"]["rule"] == "duplicate"
    for replica in (a, b):
        async with admin_client(replica.grpc_port) as admin:
            listed = await admin.ListFlagged(admin_pb2.ListFlaggedRequest(room=room))
            assert [(f.rule, f.action) for f in listed.messages] == [
                ("duplicate", "rejected"),
                ("duplicate", "rejected"),
                ("blocklist", "masked"),
                ("links", "rejected"),
            ]
            assert listed.messages[2].message_id == masked["id"]
