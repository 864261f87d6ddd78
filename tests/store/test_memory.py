"""The in-memory store (``CHATSVC_STORE=memory``): the store contract, plus its bound."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest

from chatsvc.app import build_store
from chatsvc.errors import StoreUnavailable
from chatsvc.settings import Settings, SettingsError
from chatsvc.store.base import MessageStore
from chatsvc.store.memory import MemoryStore
from tests.store import test_contract as contract
from tests.store.test_contract import NOW_MS, msg
from tests.support.servers import TEST_JWT_SECRET

# Every contract test that needs only an open store and a room runs here against memory too
# (the others need a store shared between processes, which memory is not).
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and set(inspect.signature(_test).parameters) <= {"store", "room"}:
        globals()[_name] = _test


def settings(**env: str) -> Settings:
    return Settings.from_env({"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, **env})


@pytest.fixture
async def store() -> AsyncIterator[MessageStore]:
    """Chosen the way the server chooses it."""
    opened = build_store(settings(CHATSVC_STORE="memory"))
    assert isinstance(opened, MemoryStore)
    await opened.open()
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_each_room_keeps_its_newest_messages() -> None:
    store = MemoryStore(max_per_room=3)
    await store.open()
    sent = [msg("r", NOW_MS + i, cmid=f"c{i}") for i in range(5)]
    for m in sent:
        assert (await store.append(m))[1]
    page = await store.history("r", before=None, limit=10)
    assert [m.id for m in page.messages] == [m.id for m in reversed(sent[2:])]
    assert page.next_before is None
    assert await store.get("r", sent[0].id) is None
    # A retry of a message that fell out is stored again, as after any retention policy.
    again, created = await store.append(msg("r", NOW_MS + 10, cmid="c0"))
    assert created and again.client_msg_id == "c0"
    # A retry of a message still held is recognised.
    _, created = await store.append(msg("r", NOW_MS + 11, cmid="c4"))
    assert not created


async def test_out_of_order_ids_are_kept_in_order() -> None:
    store = MemoryStore()
    await store.open()
    late, early = msg("r", NOW_MS + 5), msg("r", NOW_MS)
    await store.append(late)
    await store.append(early)
    page = await store.history("r", before=None, limit=10)
    assert [m.id for m in page.messages] == [late.id, early.id]
    assert [m.id for m in await store.after("r", early.id, 10)] == [late.id]


async def test_closed_store_is_unavailable() -> None:
    store = MemoryStore()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.open()
    await store.ping()
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreUnavailable):
        await store.append(msg("r", NOW_MS))


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_per_room"):
        MemoryStore(max_per_room=0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "sqlite"),
        ({"CHATSVC_STORE": "memory"}, "memory"),
        ({"CHATSVC_STORE": "SQLite"}, "sqlite"),
        ({"SCYLLA_CONTACT_POINTS": "127.0.0.1"}, "scylla"),
        ({"SCYLLA_CONTACT_POINTS": "127.0.0.1", "CHATSVC_STORE": "scylla"}, "scylla"),
    ],
)
def test_store_setting(env: dict[str, str], expected: str) -> None:
    assert settings(**env).store == expected


@pytest.mark.parametrize(
    "env",
    [
        {"CHATSVC_STORE": "redis"},
        {"CHATSVC_STORE": "scylla"},
        {"CHATSVC_STORE": "memory", "SCYLLA_CONTACT_POINTS": "127.0.0.1"},
        {"CHATSVC_STORE": "memory", "CHATSVC_ENV": "production"},
    ],
)
def test_bad_store_setting_names_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(**env)
    assert caught.value.variable == "CHATSVC_STORE"
