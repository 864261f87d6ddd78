"""Unit tests of chatsvc.bus.records: headers, the skip decision, the adaptive fetch."""

from __future__ import annotations

from typing import Any

from chatsvc.bus.records import (
    BATCHED,
    EAGER,
    HOST,
    METHOD,
    ROOM_OF,
    AdaptiveFetch,
    FetchMode,
    RecordFilter,
    is_room_emit,
    record_headers,
)

# python-socketio's manager ``rooms``: each sid is a room of its own holding just that sid.
ROOMS: dict[str, dict[Any, Any]] = {
    "/": {None: {"sid1": "e1"}, "sid1": {"sid1": "e1"}, "here": {"sid1": "e1"}}
}


def emit(room: Any, **extra: Any) -> dict[str, Any]:
    return {"method": "emit", "room": room, "namespace": "/", "host_id": "other", **extra}


def test_only_emits_to_a_room_are_marked_as_room_emits() -> None:
    assert is_room_emit(emit("stocks.AAPL"), ROOMS)
    assert is_room_emit(emit("here"), ROOMS)
    assert not is_room_emit(emit("sid1"), ROOMS)  # a local sid
    assert not is_room_emit(emit(None), ROOMS)  # namespace-wide
    assert not is_room_emit(emit("r", callback=["sid9", "/", 1]), ROOMS)  # ack per recipient
    for method in ("disconnect", "enter_room", "leave_room", "close_room", "control", "callback"):
        assert not is_room_emit({"method": method, "room": "r", "sid": "s"}, ROOMS)


def test_headers_name_method_host_and_room_namespace() -> None:
    assert record_headers(emit("r"), room_emit=True) == [(METHOD, b"emit"), (HOST, b"other"), (ROOM_OF, b"/")]
    assert record_headers({"method": "control", "host_id": "h", "data": {}}, room_emit=False) == [
        (METHOD, b"control"),
        (HOST, b"h"),
    ]


def headers(message: dict[str, Any], *, room_emit: bool) -> list[tuple[str, bytes]]:
    return record_headers(message, room_emit=room_emit)


def test_room_emits_for_rooms_without_local_members_are_skipped_and_nothing_else() -> None:
    rooms = {"/": dict(ROOMS["/"])}
    f = RecordFilter("me", lambda: rooms)
    far = headers(emit("far"), room_emit=True)
    assert f.skip(b"far", far) == "no_member"
    assert f.skip(b"here", headers(emit("here"), room_emit=True)) is None
    # Not marked as a room emit: decoded whatever the key (sid emits, room ops, control...).
    assert f.skip(b"far", headers(emit("far"), room_emit=False)) is None
    for method in ("disconnect", "enter_room", "leave_room", "close_room", "control"):
        assert f.skip(b"far", headers({"method": method, "host_id": "other"}, room_emit=False)) is None
    # An older replica's record has no headers: decoded.
    assert f.skip(b"far", None) is None and f.skip(b"far", []) is None
    # Own records, and acks for another host, are what python-socketio drops anyway.
    assert f.skip(b"here", headers(emit("here", host_id="me"), room_emit=True)) == "own"
    assert f.skip(b"s", headers({"method": "callback", "host_id": "other"}, room_emit=False)) == "own"
    assert f.skip(b"s", headers({"method": "callback", "host_id": "me"}, room_emit=False)) is None
    # Another namespace's room of the same name is not this one.
    assert f.skip(b"here", [(METHOD, b"emit"), (HOST, b"other"), (ROOM_OF, b"/admin")]) == "no_member"
    # A member joins later: the room's records are decoded from then on (rooms read live).
    rooms["/"]["far"] = {"sid1": "e1"}
    assert f.skip(b"far", far) is None


def test_a_key_that_is_not_utf8_is_decoded_not_guessed() -> None:
    f = RecordFilter("me", lambda: ROOMS)
    assert f.skip(b"\xff\xfe", headers(emit("x"), room_emit=True)) is None


def test_adaptive_fetch_batches_when_busy_and_returns_to_eager_when_quiet() -> None:
    fetch = AdaptiveFetch(busy=200, quiet=80, window=5)
    assert fetch.mode == EAGER
    assert fetch.observe(10, 0.0) is None
    assert fetch.observe(1_990, 4.0) is None  # the window is not over
    assert fetch.observe(0, 5.0) == BATCHED  # 2,000 records in 5 s: 400/s
    fetch.switched(BATCHED)
    assert fetch.observe(600, 10.0) is None  # 120/s: between the thresholds, stays batched
    assert fetch.observe(100, 15.0) == EAGER  # 20/s
    # The switch failed (no switched()): the next quiet window asks again.
    assert fetch.mode == BATCHED
    assert fetch.observe(0, 20.0) == EAGER
    fetch.switched(EAGER)
    assert fetch.observe(0, 25.0) is None


def test_configured_fetch_sizes_are_never_changed() -> None:
    fixed = FetchMode(65536, 20)
    fetch = AdaptiveFetch(fixed, window=1)
    assert fetch.mode == fixed
    assert fetch.observe(100_000, 0.0) is None and fetch.observe(0, 10.0) is None
    assert fetch.mode == fixed
