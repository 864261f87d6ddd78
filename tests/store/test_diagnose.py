"""Readiness text for a failing store: each host and why, probed with a real TCP connect."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from chatsvc.store.diagnose import failing_hosts
from tests.support.servers import free_port


@dataclass(frozen=True)
class EndPoint:
    address: str
    port: int


@dataclass(frozen=True)
class Host:
    """Shaped like the CQL driver's Host: only ``endpoint.address``/``endpoint.port`` are read."""

    endpoint: EndPoint


class NoHostAvailable(Exception):
    def __init__(self, errors: dict[object, BaseException]) -> None:
        super().__init__("Unable to complete the operation against any hosts", errors)
        self.errors = errors


class ConnectionException(Exception):
    pass


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


async def test_a_closed_port_is_named_with_connection_refused() -> None:
    port = free_port()
    cause = NoHostAvailable({Host(EndPoint("127.0.0.1", port)): ConnectionException("marked down")})
    assert await failing_hosts(cause, "fallback") == f"127.0.0.1:{port}: connection refused"


async def test_a_reachable_host_names_the_driver_error(listening: int) -> None:
    cause = NoHostAvailable({Host(EndPoint("127.0.0.1", listening)): ConnectionException("x")})
    assert await failing_hosts(cause, "fallback") == (
        f"127.0.0.1:{listening}: reachable, but the driver reports ConnectionException"
    )


async def test_many_hosts_are_bounded() -> None:
    hosts = {Host(EndPoint("127.0.0.1", free_port())): ConnectionException() for _ in range(5)}
    text = await failing_hosts(NoHostAvailable(hosts), "fallback")
    assert text.count("connection refused") == 3 and text.endswith("and 2 more")


@pytest.mark.parametrize(
    "cause",
    [None, ValueError("no errors map"), NoHostAvailable({}), NoHostAvailable({"127.0.0.1": OSError()})],
)
async def test_without_named_hosts_the_message_stays(cause: BaseException | None) -> None:
    assert await failing_hosts(cause, "ScyllaDB request timed out") == "ScyllaDB request timed out"


async def test_a_timeout_blames_the_known_hosts_that_do_not_answer(listening: int) -> None:
    closed = free_port()
    known = [Host(EndPoint("127.0.0.1", listening)), Host(EndPoint("127.0.0.1", closed))]
    assert await failing_hosts(None, "late", known) == f"127.0.0.1:{closed}: connection refused"
    assert await failing_hosts(None, "late", known[:1]) == "late"  # all reachable: just late
