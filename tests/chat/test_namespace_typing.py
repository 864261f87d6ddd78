"""``typing`` goes through ChatService's delivery like every other event: with the fan-out
bus failing, the typing client still gets ``{ok: true}`` (never ``bus_unavailable``, a code
the README does not list) and the failure is counted. In process: the real ChatNamespace on
a real python-socketio server whose client manager (the bus) can be taken down."""

from __future__ import annotations

import json
from typing import Any

from chatsvc.auth.identity import Identity
from chatsvc.bus.local import LocalManager
from chatsvc.chat.namespace import ChatNamespace
from chatsvc.chat.presence import LocalPresence
from chatsvc.chat.service import ChatService
from chatsvc.errors import BusUnavailable
from chatsvc.metrics import Metrics
from chatsvc.settings import Limits
from chatsvc.store.memory import MemoryStore
from tests.support.managers import recorded_server

ROOM = "stock:005930"


class FailingBus(LocalManager):
    """The in-process bus, which fails every emit like the Kafka bus during an outage."""

    down = False

    async def emit(self, *args: Any, **kwargs: Any) -> None:
        if self.down:
            raise BusUnavailable("Kafka unavailable: 127.0.0.1:19092: connection refused")
        await super().emit(*args, **kwargs)


class Tokens:
    """A verifier whose token is the user id."""

    def verify(self, token: str) -> Identity:
        return Identity(token, token.title())


async def test_typing_while_the_bus_is_down_is_acked_ok_and_counted() -> None:
    store = MemoryStore()
    await store.open()
    bus = FailingBus()
    served = await recorded_server(bus, ["lobby", "lobby"])
    metrics, limits = Metrics(), Limits()
    namespace = ChatNamespace(
        ChatService(store, served.sio, metrics, limits),
        Tokens(),
        LocalPresence(),
        limits,
        metrics,
        is_draining=lambda: False,
    )
    served.sio.register_namespace(namespace)
    alice, bob = served.sids
    for sid, user in ((alice, "alice"), (bob, "bob")):
        await namespace.on_connect(sid, {}, {"token": user})
        assert (await namespace.trigger_event("join", sid, {"room": ROOM}))["ok"] is True

    def typing_received() -> list[Any]:
        packets = [json.loads(p[2:]) for eio, p in served.sent if eio == "eio1" and p.startswith("42")]
        return [args for name, *args in packets if name == "typing"]

    assert await namespace.trigger_event("typing", alice, {"room": ROOM, "typing": True}) == {"ok": True}
    assert typing_received() == [[{"room": ROOM, "user": {"id": "alice", "name": "Alice"}, "typing": True}]]

    bus.down = True
    for flag in (False, True):
        ack = await namespace.trigger_event("typing", alice, {"room": ROOM, "typing": flag})
        assert ack == {"ok": True}
    assert metrics.registry.get_sample_value("chatsvc_bus_errors_total", {"op": "emit"}) == 2
    assert metrics.registry.get_sample_value("chatsvc_errors_total", {"code": "bus_unavailable"}) is None
    assert len(typing_received()) == 1
    # Not a member: still the listed code, outage or not.
    ack = await namespace.trigger_event("typing", alice, {"room": "elsewhere", "typing": True})
    assert ack["ok"] is False and ack["error"]["code"] == "not_in_room"

    bus.down = False
    assert await namespace.trigger_event("typing", alice, {"room": ROOM, "typing": False}) == {"ok": True}
    assert len(typing_received()) == 2
    namespace.close()
