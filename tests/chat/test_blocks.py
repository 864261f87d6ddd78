"""chatsvc.chat.blocks, in process: what a connected user who blocks nobody costs."""

from __future__ import annotations

from typing import Any

from chatsvc.chat.blocks import NOBODY, Blocks
from chatsvc.chat.cluster import ControlRouter
from chatsvc.settings import Limits


class _Store:
    """A BlockStore double: alice blocks bob, nobody else blocks anyone."""

    async def blocks_of(self, blocker: str, *, limit: int) -> list[str]:
        return ["bob"] if blocker == "alice" else []

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"not used here: {name}")


async def _nowhere(_: Any) -> None:
    return None


async def test_users_who_block_nobody_share_one_empty_list() -> None:
    blocks = Blocks(_Store(), ControlRouter(_nowhere, "r1"), Limits())  # type: ignore[arg-type]
    await blocks.attach("s1", "carol")
    await blocks.attach("s2", "dave")
    await blocks.attach("s3", "alice")
    carol, dave = await blocks.hidden_from("carol"), await blocks.hidden_from("dave")
    assert carol == dave == frozenset() and carol is dave is NOBODY  # 216 bytes each otherwise
    assert await blocks.hidden_from("alice") == {"bob"}
    assert blocks.skipped("message", [{"user": {"id": "bob"}}]) == {"s3"}  # the filter still works
    assert blocks.skipped("message", [{"user": {"id": "carol"}}]) is None


async def test_a_users_sockets_come_and_go_one_or_several() -> None:
    """One socket is kept as its sid (no set per connected user); a second tab, the
    block filter and the last detach behave as with a set."""
    blocks = Blocks(_Store(), ControlRouter(_nowhere, "r1"), Limits())  # type: ignore[arg-type]
    bob_says = [{"user": {"id": "bob"}}]
    await blocks.attach("s1", "alice")
    await blocks.attach("s1", "alice")  # again: nothing changes
    assert blocks._sockets == {"alice": "s1"}
    assert blocks.skipped("message", bob_says) == {"s1"}
    await blocks.attach("s2", "alice")
    assert blocks._sockets == {"alice": {"s1", "s2"}}
    assert blocks.skipped("message", bob_says) == {"s1", "s2"}
    blocks.detach("s9", "alice")  # not hers
    blocks.detach("s1", "alice")
    assert blocks.skipped("message", bob_says) == {"s2"}
    assert await blocks.hidden_from("alice") == {"bob"}  # still connected: list kept
    blocks.detach("s2", "alice")
    assert blocks._sockets == {} and blocks.skipped("message", bob_says) is None
    await blocks.attach("s3", "alice")
    blocks.detach("s4", "alice")  # another sid than the one held: alice stays
    assert blocks._sockets == {"alice": "s3"} and blocks.skipped("message", bob_says) == {"s3"}
    await blocks._changed("alice")  # reloading her list re-hides from the sid held
    assert blocks.skipped("message", bob_says) == {"s3"}
    blocks.detach("s3", "alice")
    assert blocks._sockets == {} and blocks.skipped("message", bob_says) is None
