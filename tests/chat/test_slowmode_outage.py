"""Slow mode through a store outage (issue 21: a CQL outage must not stop live chat): the
last mode read holds while the store is down, and is read again once it answers."""

from __future__ import annotations

from typing import Any

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat.service import ChatService
from chatsvc.chat.slowmode import MODE_CACHE_SECONDS, SlowModes
from chatsvc.errors import SlowMode, StoreUnavailable
from chatsvc.metrics import Metrics
from chatsvc.settings import Limits, ModeSettings
from chatsvc.store.memory import MemoryStore
from tests.chat.test_surge_monitor import Clock, Emitted


class FlakyStore(MemoryStore):
    """A memory store whose room modes can be made unreadable."""

    down = False

    async def get_room_mode(self, room: str) -> Any:
        if self.down:
            raise StoreUnavailable("CQL node down")
        return await super().get_room_mode(room)


async def test_the_last_mode_read_holds_while_the_store_is_down() -> None:
    store, clock = FlakyStore(), Clock()
    await store.open()
    service = ChatService(store, Emitted(), Metrics(), Limits(), clock=clock)
    slow = SlowModes(service, store, ModeSettings(), None, clock=clock)
    await store.set_slow_mode("calm", 30)
    poster, other = Identity("u", "U"), Identity("v", "V")
    await slow.check("calm", poster)
    await slow.check("quiet", poster)  # no slow mode there
    store.down = True
    clock.now += MODE_CACHE_SECONDS + 1
    with pytest.raises(SlowMode):  # the interval still holds, from the mode read before
        await slow.check("calm", poster)
    await slow.check("calm", other)
    await slow.check("quiet", poster)
    await slow.check("quiet", poster)
    with pytest.raises(StoreUnavailable):  # a room never read: nothing to go on
        await slow.check("unknown", poster)
    with pytest.raises(StoreUnavailable):  # a fresh read is a fresh read
        await slow.mode("calm", fresh=True)
    store.down = False
    await store.set_slow_mode("quiet", 30)
    await slow.check("quiet", other)
    with pytest.raises(SlowMode):
        await slow.check("quiet", other)
