"""Two chatsvc replicas over the shared Kafka broker and one keyspace on the CQL node: the
setup of every real-client cluster test (python-socketio and socket.io-client alike)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bus.helpers import new_topic, replica_env
from tests.store.conftest import cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.clients import ChatClient, ClientPool
from tests.support.servers import ServerProcess, run_cli
from tests.support.services import kafka_env
from tests.support.tokens import token

#: No rate limit in the way of a test's bursts.
FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


@contextmanager
def migrated_keyspace(data_dir: Path) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate`` (its files in
    ``data_dir``); its ``SCYLLA_*`` environment; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(data_dir, env), timeout=300)
    assert done.returncode == 0, done.stderr
    try:
        yield env
    finally:
        drop_keyspace(env, keyspace)


def start_replicas(
    server_factory: Callable[..., ServerProcess], store_env: dict[str, str], **extra: str
) -> tuple[ServerProcess, ServerProcess]:
    """Replicas ``ra`` and ``rb`` on a topic of their own and ``store_env``'s store, ready
    (``extra``: more settings for both)."""
    env = replica_env(kafka_env(), tls=False, topic=new_topic()) | store_env | FAST | extra
    a = server_factory(name="ra", CHATSVC_REPLICA_ID="ra", **env)
    b = server_factory(name="rb", CHATSVC_REPLICA_ID="rb", **env)
    for replica in (a, b):
        replica.wait_http("/readyz", timeout=60)
    return a, b


async def until_delivered(sender: ChatClient, receiver: ChatClient, room: str) -> None:
    """Both replicas hear each other (the consumers are assigned): probe until one arrives."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = (await sender.ok("message", {"room": room, "text": "probe"}))["message"]["id"]
        try:
            await receiver.next("message", where=lambda m, want=probe: m["id"] == want, within=1.0)
            return
        except TimeoutError:
            continue
    raise AssertionError("the replicas never delivered to each other")


async def on_both(
    pool: ClientPool, replicas: tuple[ServerProcess, ServerProcess], room: str, users: list[str]
) -> tuple[list[ChatClient], list[ChatClient]]:
    """A socket of each of ``users`` on each replica, all in ``room``, the replicas hearing
    each other."""
    ra, rb = replicas
    on_a = [await pool.connect(ra.url, token(u)) for u in users]
    on_b = [await pool.connect(rb.url, token(u)) for u in users]
    for client in on_a + on_b:
        await client.ok("join", {"room": room})
    await until_delivered(on_a[0], on_b[0], room)
    return on_a, on_b
