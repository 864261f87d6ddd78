"""Validation of client payloads: every failure is InvalidPayload/TooLarge naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatsvc.chat import payloads
from chatsvc.errors import InvalidPayload, TooLarge
from chatsvc.model.ids import MessageIdGenerator

AN_ID = MessageIdGenerator().new()


def test_as_object_accepts_dicts_and_json_text() -> None:
    assert payloads.as_object({"room": "a"}, 100) == {"room": "a"}
    assert payloads.as_object('{"room": "a"}', 100) == {"room": "a"}
    assert payloads.as_object(' {"room": "한국"} ', 100) == {"room": "한국"}


@pytest.mark.parametrize("data", [None, 5, 1.5, True, [1, 2], "[1]", '"text"', "not json", "", "{", "null"])
def test_as_object_rejects_everything_else(data: Any) -> None:
    with pytest.raises(InvalidPayload):
        payloads.as_object(data, 100)


def test_as_object_bounds_text_before_parsing() -> None:
    with pytest.raises(TooLarge):
        payloads.as_object(json.dumps({"text": "x" * 200}), 100)


@pytest.mark.parametrize("room", ["a", "stock:005930", "A_b-c.d:e", "x" * 64, "0"])
def test_valid_rooms(room: str) -> None:
    assert payloads.room({"room": room}) == room


@pytest.mark.parametrize(
    "room", [None, "", "x" * 65, "has space", "slash/room", "emoji🙂", "한국", 5, ["a"], "a\n", "*", "a#b"]
)
def test_invalid_rooms(room: Any) -> None:
    with pytest.raises(InvalidPayload, match="room"):
        payloads.room({"room": room})


def test_text_bounds() -> None:
    assert payloads.text({"text": "hello"}, 5) == "hello"
    assert payloads.text({"text": "가"}, 3) == "가"
    with pytest.raises(TooLarge, match="text"):
        payloads.text({"text": "가"}, 2)  # 3 UTF-8 bytes
    for bad in (None, "", "   ", 5, ["a"]):
        with pytest.raises(InvalidPayload, match="text"):
            payloads.text({"text": bad}, 10)


@pytest.mark.parametrize(
    "text",
    ["a", "hello", "x" * 9, "x" * 10, "x" * 11, " padded ", "tab\there", "\x7f", "가", "e\u0301", "\ud800"],
)
def test_text_ascii_shortcut_answers_as_the_utf8_path(text: str) -> None:
    """ASCII text skips the UTF-8 encode (one byte per character, no lone surrogate); the
    answer, accepted or which error, is what measuring the encoded bytes gives."""

    def general(value: str, max_bytes: int) -> str | type[Exception]:
        try:
            encoded = value.encode()
        except UnicodeEncodeError:
            return InvalidPayload
        return value if len(encoded) <= max_bytes else TooLarge

    def shortcut(value: str, max_bytes: int) -> str | type[Exception]:
        try:
            return payloads.text({"text": value}, max_bytes)
        except (InvalidPayload, TooLarge) as exc:
            return type(exc)

    for max_bytes in (1, 3, 9, 10, 11):
        assert shortcut(text, max_bytes) == general(text, max_bytes), (text, max_bytes)


def test_message_id_fields() -> None:
    assert payloads.message_id({"since": AN_ID}, "since", required=False) == AN_ID
    assert payloads.message_id({}, "since", required=False) is None
    with pytest.raises(InvalidPayload, match="'id'"):
        payloads.message_id({}, "id", required=True)
    for bad in ("short", AN_ID.lower(), "8" + AN_ID[1:], AN_ID[:-1] + "U", 5, AN_ID + "0"):
        with pytest.raises(InvalidPayload, match="before"):
            payloads.message_id({"before": bad}, "before", required=False)


def test_client_msg_id() -> None:
    assert payloads.client_msg_id({}) is None
    assert payloads.client_msg_id({"client_msg_id": "c-1"}) == "c-1"
    for bad in ("", "x" * 65, 7, ["a"]):
        with pytest.raises(InvalidPayload, match="client_msg_id"):
            payloads.client_msg_id({"client_msg_id": bad})


def test_page_limit() -> None:
    assert payloads.page_limit({}, 50, 100) == 50
    assert payloads.page_limit({"limit": 1}, 50, 100) == 1
    assert payloads.page_limit({"limit": 100}, 50, 100) == 100
    for bad in (0, 101, -1, 1.5, "10", True, None):
        with pytest.raises(InvalidPayload, match="limit"):
            payloads.page_limit({"limit": bad}, 50, 100)


def test_flag() -> None:
    assert payloads.flag({"typing": True}, "typing") is True
    assert payloads.flag({"typing": False}, "typing") is False
    for bad in (None, 1, "true"):
        with pytest.raises(InvalidPayload, match="typing"):
            payloads.flag({"typing": bad}, "typing")
