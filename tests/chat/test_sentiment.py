"""SentimentBoard: an aggregate never fails a delivered message's ack (issue 21's chaos run)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from chatsvc.chat.sentiment import SentimentBoard
from chatsvc.chat.service import ChatService
from chatsvc.errors import StoreUnavailable
from chatsvc.model.messages import Message
from chatsvc.model.rooms import PRIVATE_PREFIX
from chatsvc.store.base import MessageStore


class _FlakyStore:
    def __init__(self) -> None:
        self.down = True
        self.added: list[tuple[str, str, int]] = []

    async def add_sentiment(self, room: str, sentiment: str, at_ms: int) -> None:
        if self.down:
            raise StoreUnavailable("CQL node unreachable")
        self.added.append((room, sentiment, at_ms))


def _message(n: int, sentiment: str | None = "bullish", room: str = "stock:005930") -> Message:
    return Message(
        id=f"m{n}",
        room=room,
        user_id="u1",
        user_name="u1",
        text="$AAPL",
        created_at_ms=1_000 + n,
        sentiment=sentiment,
    )


async def test_a_store_outage_costs_the_counts_not_the_ack_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _FlakyStore()
    board = SentimentBoard(cast(ChatService, None), cast(MessageStore, cast(Any, store)))
    caplog.set_level(logging.INFO, logger="chatsvc.chat.sentiment")

    await board.posted(_message(1))  # does not raise
    await board.posted(_message(2, sentiment="bearish"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    assert store.added == []

    store.down = False
    await board.posted(_message(3))
    assert store.added == [("stock:005930", "bullish", 1_003)]
    assert any("counted again" in r.getMessage() for r in caplog.records)

    store.down = True
    await board.posted(_message(4))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2  # a new outage, logged again


async def test_no_sentiment_or_a_private_room_never_touches_the_store() -> None:
    store = _FlakyStore()
    store.down = False
    board = SentimentBoard(cast(ChatService, None), cast(MessageStore, cast(Any, store)))
    await board.posted(_message(1, sentiment=None))
    await board.posted(_message(2, room=PRIVATE_PREFIX + "abcdefabcdefabcdefabcdef"))
    assert store.added == []
