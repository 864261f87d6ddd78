"""What a failed chaos run keeps of CQL (tests/bus/chaos_evidence.py), read from the real
node. The chaos test itself stops the services, so its evidence reader is checked here."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from chatsvc.chat.wire import position
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.settings import Settings
from chatsvc.store.base import BUCKET_MS
from chatsvc.store.scylla.schema import STREAM_CHUNK
from chatsvc.store.scylla.store import ScyllaStore
from tests.bus.chaos_evidence import cql_rows
from tests.store.conftest import drop_keyspace, new_keyspace, scylla_env
from tests.support.servers import TEST_JWT_SECRET

pytestmark = pytest.mark.integration


async def test_the_evidence_reads_every_stream_chunk_and_message_bucket_of_the_acked() -> None:
    """Two acked messages in different stream chunks and message buckets: both stream rows
    and both message rows are found, and the key row of the one history lacked."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    settings = Settings.from_env({"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, **env})
    assert settings.scylla is not None
    store = ScyllaStore(settings.scylla, positions=False)  # positions as the events topic gives them
    room = f"chaos-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    old = now - 2 * BUCKET_MS
    sent = [
        Message(id_at(old), room, "alice", "Alice", "old", old, "c-old", pos=5),
        Message(id_at(now), room, "bob", "Bob", "new", now, "c-new", pos=STREAM_CHUNK + 5),
    ]
    acks = [
        {
            "id": m.id,
            "pos": position("e", m.pos or 0),
            "user": {"id": m.user_id},
            "client_msg_id": m.client_msg_id,
        }
        for m in sent
    ]
    await store.open()
    try:
        await store.migrate()
        for m in sent:
            await store.append(m)
        found = await asyncio.to_thread(cql_rows, env, room, acks, {sent[1].id})
    finally:
        await store.aclose()
        await asyncio.to_thread(drop_keyspace, env, keyspace)
    assert "error" not in found, found
    assert [r[:3] for r in found["stream"]] == [
        [5, "message", sent[0].id],
        [STREAM_CHUNK + 5, "message", sent[1].id],
    ]
    assert sorted(r[:4] for r in found["messages"]) == sorted(
        [[m.id, m.pos, m.client_msg_id, m.user_id] for m in sent]
    )
    assert list(found["keys_of_missing"]) == [sent[1].id]
    assert [r[:2] for r in found["keys_of_missing"][sent[1].id]] == [[sent[1].id, now]]
    assert found["head"][0][0] == STREAM_CHUNK + 5
