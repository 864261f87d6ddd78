"""Contract test for chatsvc.transport.socketio_packet: the same binary answer as
python-socketio's ``Packet.data_is_binary``, from the code it was written against."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from socketio import packet

from chatsvc.app import SIO, create_app
from chatsvc.settings import Settings
from chatsvc.transport.socketio_packet import PacketJSON, SocketIOPacket


class Bytes(bytes):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


class Mapping(dict):  # type: ignore[type-arg]
    pass


SCALARS: list[Any] = ["text", "", 0, 7, -1, 1.5, True, False, None, ("a", b"in a tuple")]
BINARIES: list[Any] = [b"", b"x", bytearray(b"y"), Bytes(b"z")]


def payload(rng: random.Random, depth: int) -> Any:
    """A random mix of what a payload can hold, binaries rare, containers nested."""
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return rng.choice(BINARIES) if rng.random() < 0.05 else rng.choice(SCALARS)
    size = rng.randrange(0, 5)
    items = [payload(rng, depth - 1) for _ in range(size)]
    if roll < 0.6:
        return items
    if roll < 0.7:
        return Items(items)
    if roll < 0.9:
        return {f"k{i}": item for i, item in enumerate(items)}
    return Mapping({f"k{i}": item for i, item in enumerate(items)})


def test_same_answer_as_python_socketio_on_generated_payloads() -> None:
    rng = random.Random(20261203)
    answers = {True: 0, False: 0}
    for _ in range(5000):
        data = payload(rng, 5)
        expected = packet.Packet.data_is_binary(data)
        assert SocketIOPacket.data_is_binary(data) is expected, data
        answers[expected] += 1
    assert answers[True] > 100 and answers[False] > 100  # both answers were exercised


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        (["message", {"room": "r", "user": {"id": "u", "name": "n"}, "text": "hi", "seq": 1}], False),
        ([{"ok": True, "message": {"id": "x"}, "duplicate": False}], False),
        (["file", {"name": "a", "content": b"\x00\x01"}], True),
        ([[[[bytearray(b"deep")]]]], True),
        (b"top level", True),
        ("top level", False),
        (("tuple", b"not looked into"), False),
    ],
)
def test_chat_payloads_and_the_edges(data: Any, binary: bool) -> None:
    assert SocketIOPacket.data_is_binary(data) is binary is packet.Packet.data_is_binary(data)


def test_a_binary_event_is_still_encoded_with_attachments() -> None:
    ours = SocketIOPacket(packet.EVENT, data=["file", {"content": b"\x00\x01"}], namespace="/")
    theirs = packet.Packet(packet.EVENT, data=["file", {"content": b"\x00\x01"}], namespace="/")
    assert ours.packet_type == packet.BINARY_EVENT
    assert ours.encode() == theirs.encode()


def test_the_server_builds_its_packets_with_it(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "CHATSVC_JWT_SECRET": "test-secret-0123456789abcdef0123456789",
            "CHATSVC_DATA_DIR": str(tmp_path),
            "CHATSVC_STORE": "memory",
            "CHATSVC_GRPC_ENABLED": "false",
        }
    )
    assert create_app(settings)[SIO].packet_class is SocketIOPacket


# -- the codec: the same text out and the same values (and errors) in as upstream's ---------

TEXTS: list[Any] = ["hi", "é ü €", "日本語", "emoji \U0001f600", 'quote " and \\ slash', "\u2028\n\t"]


def _json_payload(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return rng.choice([*TEXTS, 0, -7, 2**70, 1.5, 1e300, True, False, None])
    items = [_json_payload(rng, depth - 1) for _ in range(rng.randrange(0, 5))]
    if roll < 0.7:
        return items
    return {rng.choice(TEXTS) + str(i): item for i, item in enumerate(items)}


def test_packets_encode_and_decode_as_upstream_on_generated_payloads() -> None:
    rng = random.Random(20261207)
    for i in range(3000):
        data = ["message", _json_payload(rng, 4)]
        ours = SocketIOPacket(packet.EVENT, data=data, namespace="/", id=i or None)
        theirs = packet.Packet(packet.EVENT, data=data, namespace="/", id=i or None)
        encoded = ours.encode()
        assert encoded == theirs.encode(), data
        back = SocketIOPacket(encoded_packet=encoded)
        assert (back.packet_type, back.id, back.data) == (packet.EVENT, i or None, data)
        assert back.data == packet.Packet(encoded_packet=encoded).data


@pytest.mark.parametrize(
    "encoded",
    [
        '2["m",' + "1" * 101 + "]",  # engineio.json refuses integers of more than 100 digits
        '2["m",{"a":1',  # truncated
        '2["m"] trailing',
        '2\ufeff["m"]',  # json.loads refuses a leading BOM
        "2[NaN-]",
    ],
)
def test_bad_json_fails_the_same_way(encoded: str) -> None:
    with pytest.raises(ValueError) as theirs:
        packet.Packet(encoded_packet=encoded)
    with pytest.raises(ValueError) as ours:
        SocketIOPacket(encoded_packet=encoded)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)


def test_other_arguments_take_the_stock_codec() -> None:
    assert PacketJSON.dumps({"b": 1, "a": "é"}, sort_keys=True) == '{"a": "\\u00e9", "b": 1}'
    assert PacketJSON.loads("[1.5]", parse_float=str) == ["1.5"]
    assert PacketJSON.loads(b'{"x": 1}') == {"x": 1}


def _circular() -> list[Any]:
    loop: list[Any] = ["again"]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "obj",
    [
        "plain",
        'héllo ☃ \u2028 "quoted" \\ \n',
        ["message", {"n": 1, "f": 1.5, "big": 10**30, "nan": float("nan"), "inf": float("-inf")}],
        {"nested": [[], {}, [None, True, False]], 3: "int key", 2.5: "float key", None: "null key"},
        ("tuple", "as a list"),
    ],
)
def test_compact_dumps_is_the_stdlibs(obj: Any) -> None:
    assert PacketJSON.dumps(obj, separators=(",", ":")) == json.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize("obj", [{"x": object()}, _circular(), {b"bytes key": 1}])
def test_compact_dumps_fails_as_the_stdlib_and_recovers(obj: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as theirs:
        json.dumps(obj, separators=(",", ":"))
    with pytest.raises((TypeError, ValueError)) as ours:
        PacketJSON.dumps(obj, separators=(",", ":"))
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
    shared: list[Any] = ["shared"]
    # No state left behind by the failure: the same list twice is no circular reference.
    assert PacketJSON.dumps([shared, shared], separators=(",", ":")) == '[["shared"],["shared"]]'
