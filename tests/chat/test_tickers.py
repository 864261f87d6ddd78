"""Cashtag extraction and the sentiment field (issue 25), as pure functions."""

from __future__ import annotations

import pytest

from chatsvc.chat.tickers import Cashtags, sentiment
from chatsvc.errors import InvalidPayload
from chatsvc.settings import CASHTAG_PATTERN, Settings, SettingsError
from tests.support.servers import TEST_JWT_SECRET


@pytest.mark.parametrize(
    ("text", "tickers"),
    [
        ("$AAPL", ("AAPL",)),
        ("buy $aapl, sell $TSLA.", ("AAPL", "TSLA")),
        ("$005930 is Samsung", ("005930",)),
        ("$BRK.B and $brk.a", ("BRK.B", "BRK.A")),
        ("$AAPL $AAPL $aapl", ("AAPL",)),
        ("US$5 a$b $$AAPL $12345 $1234567 $TOOLONG $AAPL_X", ()),
        ("($NVDA) [$AMD]", ("NVDA", "AMD")),
        ("no dollars at all", ()),
        ("", ()),
    ],
)
def test_default_pattern(text: str, tickers: tuple[str, ...]) -> None:
    assert Cashtags(CASHTAG_PATTERN, 10).extract(text) == tickers


def test_bounded_and_off() -> None:
    text = " ".join(f"${chr(65 + i)}" for i in range(26))
    assert Cashtags(CASHTAG_PATTERN, 3).extract(text) == ("A", "B", "C")
    assert Cashtags(CASHTAG_PATTERN, 0).extract(text) == ()


def test_a_pattern_without_a_group_keeps_the_match_without_its_dollar() -> None:
    assert Cashtags(r"\$[A-Z]{2,4}", 5).extract("$AB $XYZW") == ("AB", "XYZW")


def test_sentiment_field() -> None:
    assert sentiment({}) is None
    assert sentiment({"sentiment": None}) is None
    assert sentiment({"sentiment": "bullish"}) == "bullish"
    assert sentiment({"sentiment": "bearish"}) == "bearish"
    for bad in ("Bullish", "neutral", "", 1, True, ["bullish"]):
        with pytest.raises(InvalidPayload):
            sentiment({"sentiment": bad})


def _settings(**env: str) -> Settings:
    return Settings.from_env({"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, **env})


def test_settings_validate_the_modes() -> None:
    modes = _settings(CHATSVC_SURGE_RATE="0", CHATSVC_MAX_TICKERS="2").modes
    assert modes.surge_rate == 0 and modes.tickers_per_message == 2
    for name, value in (
        ("CHATSVC_CASHTAG_PATTERN", "($"),
        ("CHATSVC_CASHTAG_PATTERN", r"\$(A)(B)"),
        ("CHATSVC_SURGE_RATE", "-1"),
        ("CHATSVC_SURGE_WINDOW", "0"),
        ("CHATSVC_SLOW_MODE_MAX", "0"),
        ("CHATSVC_SENTIMENT_EVENT_MS", "10"),
        ("CHATSVC_MAX_TICKERS", "101"),
    ):
        with pytest.raises(SettingsError) as info:
            _settings(**{name: value})
        assert name in str(info.value)
