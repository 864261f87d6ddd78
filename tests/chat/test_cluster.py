"""ControlRouter and ClusterActions over an in-process control channel."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatsvc.chat.cluster import CONTROL_VERSION, ClusterActions, ControlRouter, Reach
from tests.support.control_net import ControlNet


@pytest.fixture
async def net() -> AsyncIterator[ControlNet]:
    net = ControlNet()
    yield net
    await net.close()


async def test_router_stamps_and_routes_by_type(net: ControlNet) -> None:
    a, b = net.router("a"), net.router("b")
    got: list[dict[str, Any]] = []

    async def handler(message: dict[str, Any]) -> None:
        got.append(message)

    b.route("thing", handler)
    await a.publish("thing", {"x": 1})
    await net.settle()
    assert got == [{"x": 1, "type": "thing", "replica": "a", "v": CONTROL_VERSION}]


async def test_router_ignores_own_foreign_version_unknown_and_malformed(
    net: ControlNet, caplog: pytest.LogCaptureFixture
) -> None:
    a = net.router("a")
    got: list[dict[str, Any]] = []

    async def handler(message: dict[str, Any]) -> None:
        got.append(message)

    a.route("thing", handler)
    caplog.set_level(logging.WARNING)
    for message in (
        {"type": "thing", "replica": "a", "v": CONTROL_VERSION},  # our own echo
        {"type": "thing", "replica": "b", "v": CONTROL_VERSION + 1},  # a newer format
        {"type": "other", "replica": "b", "v": CONTROL_VERSION},
        {"type": "other", "replica": "b", "v": CONTROL_VERSION},
        {"replica": "b", "v": CONTROL_VERSION},
        ["not", "an", "object"],
    ):
        await a.dispatch(message)  # type: ignore[arg-type]
    assert got == []
    unknown = [r for r in caplog.records if "unknown type" in r.getMessage()]
    assert len(unknown) == 1, "each kind of bad message is logged once"


async def test_a_failing_handler_is_logged_not_raised(
    net: ControlNet, caplog: pytest.LogCaptureFixture
) -> None:
    a = net.router("a")

    async def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    a.route("thing", broken)
    await a.dispatch({"type": "thing", "replica": "b", "v": CONTROL_VERSION})
    assert any("failed" in r.getMessage() for r in caplog.records)


def test_a_type_has_one_owner() -> None:
    async def publish(message: dict[str, Any]) -> None: ...

    async def handler(message: dict[str, Any]) -> None: ...

    router = ControlRouter(publish, "a")
    router.route("thing", handler)
    with pytest.raises(ValueError, match="already routed"):
        router.route("thing", handler)


def _replicas(net: ControlNet, sockets: dict[str, int], *, timeout: float = 2.0) -> dict[str, ClusterActions]:
    """One ClusterActions per replica; the action 'count' reports that replica's sockets."""
    actions: dict[str, ClusterActions] = {}
    for rid, count in sockets.items():
        peers = [p for p in sockets if p != rid]
        actions[rid] = ClusterActions(net.router(rid), lambda peers=peers: peers, timeout=timeout)  # type: ignore[misc]

        async def handler(args: dict[str, Any], count: int = count) -> int:
            assert args == {"user_id": "alice"}
            return count

        actions[rid].register("count", handler)
    return actions


async def test_an_action_reaches_every_replica_and_adds_up(net: ControlNet) -> None:
    actions = _replicas(net, {"a": 1, "b": 2, "c": 3})
    assert await actions["b"].run("count", {"user_id": "alice"}) == Reach(6, 3, ())


async def test_a_silent_peer_is_reported_not_waited_for_forever(net: ControlNet) -> None:
    actions = _replicas(net, {"a": 1, "b": 2}, timeout=0.2)
    ghost = ClusterActions(net.router("c"), lambda: ["a", "b", "ghost"], timeout=0.2)

    async def handler(args: dict[str, Any]) -> int:
        return 0

    ghost.register("count", handler)
    reach = await ghost.run("count", {"user_id": "alice"})
    assert reach == Reach(3, 3, ("ghost",))
    assert actions  # the peers answered


async def test_with_the_bus_down_local_sockets_are_still_handled(net: ControlNet) -> None:
    actions = _replicas(net, {"a": 1, "b": 2})
    net.up = False
    assert await actions["a"].run("count", {"user_id": "alice"}) == Reach(1, 1, ("b",))


async def test_a_peer_whose_handler_fails_still_answers(net: ControlNet) -> None:
    actions = _replicas(net, {"a": 1, "b": 2}, timeout=5.0)

    async def broken(args: dict[str, Any]) -> int:
        raise RuntimeError("boom")

    actions["b"].register("count", broken)
    reach = await actions["a"].run("count", {"user_id": "alice"})
    assert reach == Reach(1, 2, ())
