"""Task-free room broadcasts put exactly python-socketio's packets on each socket, in order."""

from __future__ import annotations

from typing import Any

import pytest
import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from chatsvc.bus.kafka import AsyncKafkaManager
from chatsvc.bus.local import LocalManager
from chatsvc.transport.broadcast import Delivery, DirectEmitMixin
from tests.support.managers import recorded_server

Sent = list[tuple[str, str]]


def per_socket(sent: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Sends grouped by socket, each socket's in the order sent: a broadcast's order across
    sockets is not part of the contract (plain recipients go before offset ones), each
    socket's own order is."""
    return sorted(sent, key=lambda item: item[0])


async def deliveries(manager: socketio.AsyncManager, emits: list[dict[str, Any]]) -> Sent:
    """(engine.io sid, encoded packet) for everything ``emits`` queue, in queueing order."""
    served = await recorded_server(manager, ["lobby", "lobby", "lobby", "other"])
    for emit in emits:
        await manager.emit(
            namespace="/",
            **{k: v.replace("SID", served.sids[0]) if k == "skip_sid" else v for k, v in emit.items()},
        )
    return served.sent


EMITS: list[dict[str, Any]] = [
    {"event": "message", "data": {"room": "lobby", "text": "héllo", "n": 1}, "room": "lobby"},
    {"event": "message", "data": {"text": "skip me"}, "room": "lobby", "skip_sid": "SID"},
    {"event": "typing", "data": ("two", "args"), "room": "lobby"},
    {"event": "presence", "data": None, "room": "other"},
    {"event": "everyone", "data": [1, 2, 3]},
    {"event": "nobody", "data": {"x": 1}, "room": "empty-room"},
    {"event": "binary", "data": {"blob": b"\x00\x01"}, "room": "lobby"},
]


@pytest.mark.parametrize("index", range(len(EMITS)))
async def test_same_packets_as_python_socketio(index: int) -> None:
    emits = [EMITS[index]]
    stock = await deliveries(socketio.AsyncManager(), emits)
    direct = await deliveries(LocalManager(), emits)
    assert direct == stock


async def test_a_sequence_keeps_per_socket_order() -> None:
    stock = await deliveries(socketio.AsyncManager(), EMITS)
    direct = await deliveries(LocalManager(), EMITS)
    assert direct == stock
    assert len(direct) > len(EMITS)


async def test_skip_sid_leaves_out_the_sender() -> None:
    sent = await deliveries(LocalManager(), [EMITS[1]])
    assert sorted(eio for eio, _ in sent) == ["eio1", "eio2"]


async def test_one_failing_socket_does_not_stop_the_broadcast() -> None:
    manager = LocalManager()
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    sio.manager_initialized = True
    manager.initialize()
    reached: list[str] = []

    async def send(eio_sid: str, pkt: Any) -> None:
        if eio_sid == "eio0":
            raise RuntimeError("socket closing")
        reached.append(eio_sid)

    sio.eio.send_packet = send
    for i in range(3):
        sid = await manager.connect(f"eio{i}", "/")
        await manager.enter_room(sid, "/", "lobby")
    await manager.emit("message", {"a": 1}, "/", room="lobby")
    assert sorted(reached) == ["eio1", "eio2"]


async def test_acks_keep_python_socketios_path() -> None:
    manager = LocalManager()
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    sio.manager_initialized = True
    manager.initialize()
    packets: list[Any] = []

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        packets.append(pkt)

    sio._send_packet = send_packet
    sid = await manager.connect("eio0", "/")
    await manager.enter_room(sid, "/", "lobby")
    await manager.emit("question", {"q": 1}, "/", room="lobby", callback=lambda *a: None)
    assert len(packets) == 1 and packets[0].id is not None


def test_the_mixin_can_sit_under_a_pubsub_manager() -> None:
    class Bus(AsyncPubSubManager, DirectEmitMixin):  # type: ignore[misc]
        pass

    # The pub/sub manager's local delivery (super().emit) then lands on the mixin.
    mro = Bus.__mro__
    assert mro.index(AsyncPubSubManager) < mro.index(DirectEmitMixin) < mro.index(socketio.AsyncManager)


def test_the_kafka_manager_delivers_locally_through_the_mixin() -> None:
    mro = AsyncKafkaManager.__mro__
    assert mro.index(AsyncPubSubManager) < mro.index(DirectEmitMixin) < mro.index(socketio.AsyncManager)


class Offsets:
    """Offsets for ``message`` events (the payload's ``id``), for the sockets in ``opted``;
    the sockets in ``have`` are answered ``skip`` (they already have it, or must wait)."""

    def __init__(
        self, opted: set[str], have: frozenset[str] = frozenset(), skip: Delivery = Delivery.ALREADY_SENT
    ) -> None:
        self.opted = opted
        self.have = have
        self.skip = skip

    def offset_of(self, event: str, args: Any) -> str | None:
        return args[0]["id"] if event == "message" else None

    def opted_in(self) -> set[str]:
        return self.opted | self.have

    def delivery(self, sid: str) -> Delivery:
        if sid in self.have:
            return self.skip
        return Delivery.WITH_OFFSET if sid in self.opted else Delivery.PLAIN


async def offset_deliveries(
    emits: list[dict[str, Any]],
    opted: list[int],
    have: tuple[int, ...] = (),
    skip: Delivery = Delivery.ALREADY_SENT,
    *,
    direct: bool = True,
) -> tuple[Sent, list[str]]:
    """Deliveries with an offset policy that opts in the sockets at indexes ``opted``
    (``direct``: the direct-emit fast path on; off, python-socketio's way of sending)."""
    manager = LocalManager()
    manager.direct_emit = direct
    served = await recorded_server(manager, ["lobby", "lobby", "lobby"])
    sent, sids = served.sent, served.sids
    manager.use_offsets(Offsets({sids[i] for i in opted}, frozenset(sids[i] for i in have), skip))
    for emit in emits:
        await manager.emit(namespace="/", **{k: sids[v] if k == "to" else v for k, v in emit.items()})
    return sent, sids


@pytest.mark.parametrize("direct", [True, False], ids=["direct-emit", "stock-emit"])
async def test_offsets_reach_only_the_sockets_that_opted_in(direct: bool) -> None:
    sent, _ = await offset_deliveries(
        [{"event": "message", "data": {"id": "01J", "text": "hi"}, "room": "lobby"}], opted=[1], direct=direct
    )
    assert per_socket(sent) == [
        ("eio0", '42["message",{"id":"01J","text":"hi"}]'),
        ("eio1", '42["message",{"id":"01J","text":"hi"},"01J"]'),
        ("eio2", '42["message",{"id":"01J","text":"hi"}]'),
    ]


@pytest.mark.parametrize("direct", [True, False], ids=["direct-emit", "stock-emit"])
@pytest.mark.parametrize("skip", [Delivery.ALREADY_SENT, Delivery.WITHHELD])
async def test_a_socket_that_already_has_the_offset_is_not_sent_it_again(
    skip: Delivery, direct: bool
) -> None:
    """Nor one whose recovery session was saved (withheld: it gets the event by replay)."""
    sent, _ = await offset_deliveries(
        [
            {"event": "message", "data": {"id": "01N"}, "room": "lobby"},
            {"event": "typing", "data": {"typing": True}, "room": "lobby"},
        ],
        opted=[0, 1],
        have=(1,),
        skip=skip,
        direct=direct,
    )
    assert per_socket(sent) == per_socket(
        [
            ("eio0", '42["message",{"id":"01N"},"01N"]'),
            ("eio2", '42["message",{"id":"01N"}]'),
            # Events without an offset are never "already sent".
            *[(f"eio{i}", '42["typing",{"typing":true}]') for i in range(3)],
        ]
    )


async def test_events_without_an_offset_are_unchanged_for_everyone() -> None:
    emits: list[dict[str, Any]] = [{"event": "typing", "data": {"typing": True}, "room": "lobby"}]
    with_policy, _ = await offset_deliveries(emits, opted=[0, 1, 2])
    without, _ = await offset_deliveries(emits, opted=[])
    stock, _ = await offset_deliveries(emits, opted=[0, 1, 2], direct=False)
    assert sorted(stock) == sorted(with_policy)
    assert with_policy == without == [(f"eio{i}", '42["typing",{"typing":true}]') for i in range(3)]


async def test_an_emit_to_one_socket_carries_its_offset() -> None:
    sent, _ = await offset_deliveries([{"event": "message", "data": {"id": "01K"}, "to": 2}], opted=[2])
    assert sent == [("eio2", '42["message",{"id":"01K"},"01K"]')]


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The data of every python-socketio packet encoded while the test runs, in order."""
    seen: list[Any] = []
    real = socketio.packet.Packet.encode

    def counting(self: Any) -> Any:
        seen.append(self.data)
        return real(self)

    monkeypatch.setattr(socketio.packet.Packet, "encode", counting)
    return seen


async def test_each_variant_is_encoded_once_per_broadcast(encodes: list[Any]) -> None:
    await offset_deliveries([{"event": "message", "data": {"id": "01L"}, "room": "lobby"}], opted=[0, 1])
    assert encodes == [["message", {"id": "01L"}], ["message", {"id": "01L"}, "01L"]]


async def test_a_room_nobody_here_is_in_or_everyone_skipped_is_encoded_for_no_one(
    encodes: list[Any],
) -> None:
    """A replica reads every room's records and most are for rooms it has nobody in: the
    broadcast finds its recipients before it encodes anything (issue 26)."""
    manager = LocalManager()
    served = await recorded_server(manager, ["lobby", "other"])
    assert manager.has_members("lobby") and not manager.has_members("empty-room")
    await manager.emit("message", {"id": "01N"}, namespace="/", room="empty-room")
    await manager.emit("message", {"id": "01O"}, namespace="/", room="other", skip_sid=served.sids[1])
    assert encodes == [] and served.sent == []
    await manager.emit("message", {"id": "01P"}, namespace="/", room="lobby")
    assert encodes == [["message", {"id": "01P"}]] and served.sent == [("eio0", '42["message",{"id":"01P"}]')]
    await manager.leave_room(served.sids[0], "/", "lobby")
    assert not manager.has_members("lobby"), "a room its last member left"


async def test_idle_websockets_get_the_same_frames_each_variant_framed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recipients the engine.io server can write to directly get exactly the frames of the
    packets the queue path would have sent them; the rest get those packets queued."""
    from chatsvc.transport import broadcast as direct  # noqa: PLC0415
    from chatsvc.transport.frames import frame  # noqa: PLC0415
    from chatsvc.transport.sioserver import RecoveringServer  # noqa: PLC0415

    built: list[int] = []
    real_frames = direct.frames

    def counting(packets: Any) -> bytes:
        built.append(len(packets))
        return real_frames(packets)

    monkeypatch.setattr(direct, "frames", counting)
    manager = LocalManager()
    sio = RecoveringServer(async_mode="aiohttp", client_manager=manager)  # the app's server
    sio.manager_initialized = True
    manager.set_server(sio)
    manager.initialize()
    written: list[tuple[str, bytes]] = []
    queued: Sent = []

    def write_frames(eio_sids: list[str], data: bytes, now: float) -> list[str]:
        written.extend((eio_sid, data) for eio_sid in eio_sids if eio_sid != "eio1")
        return [eio_sid for eio_sid in eio_sids if eio_sid == "eio1"]  # e.g. still polling

    async def record(eio_sid: str, pkt: Any) -> None:
        queued.append((eio_sid, pkt.encode()))

    monkeypatch.setattr(sio.eio, "write_frames", write_frames)
    monkeypatch.setattr(sio.eio, "send_packet", record)
    sids = [await manager.connect(f"eio{i}", "/") for i in range(4)]
    for sid in sids:
        await manager.enter_room(sid, "/", "lobby")
    manager.use_offsets(Offsets({sids[2], sids[3]}))
    await manager.emit("message", {"id": "01M", "t": "é"}, "/", room="lobby")
    plain = '42["message",{"id":"01M","t":"\\u00e9"}]'  # python-socketio's JSON escapes non-ASCII
    offset = plain[:-1] + ',"01M"]'
    assert written == [("eio0", frame(plain)), ("eio2", frame(offset)), ("eio3", frame(offset))]
    assert queued == [("eio1", plain)]
    assert built == [1, 1]  # one per variant, not per recipient


async def test_lean_rooms_list_the_same_participants_as_python_socketios() -> None:
    """A socket's own room and every other room but the namespace's are LeanRooms; what
    python-socketio reads of them (participants, a socket's rooms, leaving) is unchanged."""
    stock, lean = socketio.AsyncManager(), LocalManager()
    served = {}
    for manager in (stock, lean):
        served[id(manager)] = await recorded_server(manager, ["lobby", "lobby", "other"])
    assert type(lean.rooms["/"][None]).__name__ == "bidict"  # its inverse is read
    assert {type(m).__name__ for r, m in lean.rooms["/"].items() if r is not None} == {"LeanRoom"}
    assert {type(m).__name__ for m in stock.rooms["/"].values()} == {"bidict"}

    def listed(manager: socketio.AsyncManager, room: Any) -> list[str]:
        return [eio_sid for _, eio_sid in manager.get_participants("/", room)]

    def rooms_of_first(manager: socketio.AsyncManager) -> list[str]:
        sid = served[id(manager)].sids[0]
        return sorted("own" if room == sid else room for room in manager.get_rooms(sid, "/"))

    rooms: list[Any] = ["lobby", "other", None, "nowhere", ["other", "lobby"], ["lobby", "nowhere"]]
    for room in rooms:
        assert listed(lean, room) == listed(stock, room), room
    assert rooms_of_first(lean) == rooms_of_first(stock) == ["lobby", "own"]
    for manager in (stock, lean):
        manager.basic_leave_room(served[id(manager)].sids[0], "/", "lobby")
    for room in rooms:
        assert listed(lean, room) == listed(stock, room), room


async def test_participants_are_python_socketios_in_its_order() -> None:
    """``_participants`` (direct-emit) lists what python-socketio's generator yields, in its
    order, from LeanRooms (lean-socket) and from bidicts alike."""
    stock, ours = socketio.AsyncManager(), LocalManager()
    for manager in (stock, ours):
        served = await recorded_server(manager, ["lobby", "lobby", "lobby", "other"])
        await manager.enter_room(served.sids[0], "/", "other")  # in both: a list names it once

    def eio_sids(pairs: Any) -> list[str]:
        return [eio_sid for _, eio_sid in pairs]

    rooms: list[Any] = ["lobby", "other", ["lobby", "other"], ["other", "lobby", "gone"], ["gone", "lobby"]]
    for room in [*rooms, "gone", None]:
        for namespace in ("/", "/elsewhere"):
            expected = eio_sids(stock.get_participants(namespace, room))
            assert eio_sids(ours._participants(namespace, room)) == expected, (namespace, room)
            # the same body over python-socketio's bidicts (lean-socket off)
            assert eio_sids(LocalManager._members(stock, namespace, room).items()) == expected, (
                namespace,
                room,
            )
    assert len(list(ours._participants("/", ["lobby", "other"]))) == 4
