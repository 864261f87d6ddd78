"""MessageEvents.annotate: a page's reply summaries and reactions are read at the same time
and both land on each message (unit test with in-memory doubles of the two readers)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

from chatsvc.chat.message_events import MessageEvents
from chatsvc.model.messages import Message, ThreadSummary


class Threads:
    def __init__(self, started: asyncio.Event, other: asyncio.Event) -> None:
        self.started, self.other = started, other

    async def annotate(self, room: str, messages: list[Message]) -> list[Message]:
        self.started.set()
        async with asyncio.timeout(2):
            await self.other.wait()  # only returns if the reactions read runs meanwhile
        return [replace(m, thread=ThreadSummary(2, 5)) if m.id == "a" else m for m in messages]


class Reactions:
    def __init__(self, started: asyncio.Event, other: asyncio.Event) -> None:
        self.started, self.other = started, other

    async def annotate(self, room: str, messages: list[Message], reader: str) -> list[Message]:
        self.started.set()
        async with asyncio.timeout(2):
            await self.other.wait()
        return [
            replace(m, reactions={"🚀": 1}, own_reactions=["🚀"]) if m.id in {"a", "b"} else m
            for m in messages
        ]


async def test_annotations_are_read_concurrently_and_merged_per_message() -> None:
    threads_started, reactions_started = asyncio.Event(), asyncio.Event()
    events = MessageEvents(
        cast(Any, None),
        cast(Any, None),
        threads=cast(Any, Threads(threads_started, reactions_started)),
        reactions=cast(Any, Reactions(reactions_started, threads_started)),
        pins=cast(Any, None),
        joined=lambda conn, payload: "r",
        allowed=lambda conn, payload: "r",
        hidden_from=cast(Any, None),
        is_muted=None,
    )
    page = [Message(i, "r", "u", "U", i, 1) for i in ("a", "b", "c")]
    shown = await events.annotate("r", page, "u")
    assert [m.id for m in shown] == ["a", "b", "c"]
    a, b, c = shown
    assert a.thread == ThreadSummary(2, 5) and a.reactions == {"🚀": 1} and a.own_reactions == ["🚀"]
    assert b.thread is None and b.reactions == {"🚀": 1}
    assert c.thread is None and c.reactions is None and c.own_reactions is None
