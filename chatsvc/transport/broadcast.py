"""Room broadcasts without a task per recipient, and per-socket recovery offsets.

python-socketio's ``AsyncManager.emit`` encodes a broadcast once, then starts one asyncio
task per recipient just to put the packet on that socket's send queue, and waits for all
of them. Putting on an unbounded queue never blocks, so those tasks buy nothing; in a room
of 1,000 they were a fifth of the server's CPU (see bench/README.md). This mixin queues the
same encoded packet for each recipient in a plain loop. Packets, their order per socket,
and everything on the wire stay exactly as before.

Connection state recovery (socket.io-client's ``connectionStateRecovery``) needs an offset
appended as the last argument of recoverable events, but only for the sockets that asked
for it: python-socketio's client passes every argument to its handlers, so an extra one
would break clients that never opted in. A :class:`RecoveryOffsets` policy installed with
``use_offsets`` decides both; each variant of a broadcast is still encoded once. It may also
say a socket already has the event (replayed to it during recovery before the bus brought
it here), which is then not sent again: socket.io-client does not drop repeats; or that it
must wait (its session was saved at disconnect: it gets the event by replay instead).

Each variant is also framed once: recipients whose websocket is idle get the same frame
bytes written straight to their transport (``chatsvc.transport.frames``, which says when
that is safe); the others get the packets queued as before.

Put it *after* python-socketio's manager in the bases of a pub/sub manager (so local
delivery of bus messages takes this path too), e.g.
``class AsyncKafkaManager(AsyncPubSubManager, DirectEmitMixin)``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any, Protocol

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from chatsvc.transport.engine import EngineIOServer
from chatsvc.transport.frames import clock, frames

log = logging.getLogger(__name__)


class Delivery(enum.Enum):
    """How one recipient gets a recoverable event."""

    PLAIN = "plain"
    WITH_OFFSET = "with_offset"
    #: It already has this offset: sending it again would be a repeat.
    ALREADY_SENT = "already_sent"
    #: Not now: its session was saved at disconnect, so an event it got from here on would
    #: be missing from that record; the recovered socket gets it from the store instead.
    WITHHELD = "withheld"


class RecoveryOffsets(Protocol):
    """Which events carry a recovery offset, and how each socket receives them."""

    def offset_of(self, event: str, args: Sequence[Any]) -> str | None:
        """The offset of an outgoing event (``args`` as the client will receive them),
        or ``None`` when the event is not recoverable."""

    def opted_in(self) -> Container[str]:
        """The Socket.IO sessions :meth:`delivery` may answer other than ``PLAIN`` for; the
        others are not asked (most sockets of a big room, every one when none opted in)."""

    def delivery(self, sid: str) -> Delivery:
        """How the Socket.IO session ``sid`` gets the event ``offset_of`` just named."""


class Absorber(Protocol):
    """Takes some room events instead of their local delivery (``chatsvc.chat.coalesce``)."""

    def absorb(self, event: str, data: Any, room: str | None) -> bool:
        """True if the event was taken (and must not be delivered as it is)."""


class RecipientFilter(Protocol):
    """Local sockets that must not get an event (blocking, chatsvc.chat.blocks)."""

    def skipped(self, event: str, args: Sequence[Any]) -> Container[str] | None:
        """The sids to leave out of this event, or None (the usual answer) for none."""


class LeanRoom(dict[str, str]):
    """A room's members, ``sid -> eio_sid``, as python-socketio's manager keeps them in a
    ``bidict`` (``BaseManager.basic_enter_room``, hash-pinned), without the inverse map:
    python-socketio reads a room's inverse only for the namespace's room of every socket
    (``None``, ``sid_from_eio_sid``), which stays a ``bidict``, and its members through
    ``_fwdm`` (``get_participants``). Every socket is in two rooms of one member from its
    connect on (its own sid's and its user's): a ``bidict`` there is three objects, two
    tables, about 0.3 KiB more per room than this one dict."""

    __slots__ = ()

    @property
    def _fwdm(self) -> dict[str, str]:
        return self


class DirectEmitMixin(socketio.AsyncManager):  # type: ignore[misc]
    """``emit`` to a room or to everyone: encode once, enqueue per recipient, no tasks."""

    _offsets: RecoveryOffsets | None = None
    _absorber: Absorber | None = None
    #: Off (``FastPaths.direct_emit``): python-socketio's ``AsyncManager.emit`` (a task per
    #: recipient); only an event some recipient may get with a recovery offset still takes
    #: :meth:`emit`'s split, sent the stock way (a task per recipient): the stock emit knows
    #: no offsets.
    direct_emit = True
    #: Rooms but the namespace's own are :class:`LeanRoom` (``FastPaths.lean_socket``; off:
    #: python-socketio's ``bidict`` for every room).
    lean_rooms = True
    _filter: RecipientFilter | None = None

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        """``BaseManager.basic_enter_room`` (python-socketio 5.18.1), a new room other than
        the namespace's own (``None``) made a :class:`LeanRoom`; the same checks and errors."""
        if not self.lean_rooms or room is None:
            super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
            return
        if eio_sid is None and namespace not in self.rooms:
            raise ValueError("sid is not connected to requested namespace")
        if sid != room and self.is_sid_room(namespace, room):
            raise ValueError("cannot enter a sid room")
        rooms = self.rooms.setdefault(namespace, {})
        members = rooms.get(room)
        if members is None:
            members = rooms[room] = LeanRoom()
        if eio_sid is None:
            eio_sid = rooms[None][sid]
        members[sid] = eio_sid

    def get_participants(self, namespace: str, room: Any) -> Iterator[tuple[str, str]]:
        """``BaseManager.get_participants`` (python-socketio 5.18.1), a :class:`LeanRoom`'s
        members read as the dict it is, not through its ``_fwdm`` property (a call per
        delivery); the same pairs in the same order."""
        if not self.lean_rooms:
            yield from super().get_participants(namespace, room)
            return
        yield from self._members(namespace, room).items()

    def has_members(self, room: str, namespace: str = "/") -> bool:
        """Whether any socket of this replica is in ``room`` (python-socketio drops a room
        when its last member leaves; one left empty reads the same)."""
        return bool(self.rooms.get(namespace, {}).get(room))

    def use_filter(self, policy: RecipientFilter | None) -> None:
        """Leave out the recipients ``policy`` names, from now on (``None``: nobody)."""
        self._filter = policy

    def use_offsets(self, policy: RecoveryOffsets | None) -> None:
        """Append recovery offsets, as ``policy`` decides, from now on (``None``: never)."""
        self._offsets = policy

    def use_absorber(self, absorber: Absorber | None) -> None:
        """Offer every local room delivery to ``absorber`` first (``None``: never). This is
        the receiving side of the bus: each replica decides for its own sockets."""
        self._absorber = absorber

    def _eio_packets(self, namespace: str, data: list[Any]) -> list[eio_packet.Packet]:
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=data)
        encoded = pkt.encode()
        return [
            eio_packet.Packet(eio_packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """Deliver an event to the local participants of ``room`` (or of the namespace)."""
        if callback is not None:
            # Each recipient needs its own ack id: python-socketio's per-recipient path.
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
            )
            return
        room = to or room
        if namespace not in self.rooms:
            return
        if self._absorber is not None and isinstance(room, str) and self._absorber.absorb(event, data, room):
            return
        if isinstance(data, tuple):
            args = list(data)  # tuples are several arguments, as in python-socketio
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        # Recipients who block the author (few, or None): skipped, the frames stay shared.
        hidden = self._filter.skipped(event, args) if self._filter is not None else None
        policy = self._offsets
        offset = policy.offset_of(event, args) if policy is not None else None
        opted = policy.opted_in() if offset is not None and policy is not None else ()
        if not opted and not self.direct_emit:
            # Nobody to give an offset: python-socketio's own emit sends the same packets.
            if hidden:  # rare: some recipient blocks the author
                participants = self.get_participants(namespace, room)
                skip_sid = [sid for sid, _ in participants if sid in skip or sid in hidden]
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, **kwargs)
            return
        plain: list[str] = []  # the Engine.IO sids that get ``packets``
        with_offset: list[str] = []  # ... and those that get them with the offset appended
        read = self._participants if self.direct_emit else self.get_participants
        members = read(namespace, room)
        for sid, eio_sid in members:
            if sid in skip or (hidden and sid in hidden):
                continue
            if opted and sid in opted and policy is not None:
                how = policy.delivery(sid)
                if how is Delivery.WITH_OFFSET:
                    with_offset.append(eio_sid)
                    continue
                if how is not Delivery.PLAIN:
                    continue  # already sent, or withheld
            plain.append(eio_sid)
        # Encoded only for someone: a replica reads every room's records from the events
        # topic, most of them for rooms it has nobody in (docs/scaling.md).
        if plain:
            await self._send_each(event, plain, self._eio_packets(namespace, [event, *args]))
        if with_offset:
            await self._send_each(event, with_offset, self._eio_packets(namespace, [event, *args, offset]))

    def _participants(self, namespace: str, room: Any) -> Iterable[tuple[str, str]]:
        """``get_participants`` (python-socketio 5.18.1, hash-pinned) returning its copy's
        pairs instead of yielding them: the same recipients in the same order, without a
        generator resumption per recipient (fast path ``direct-emit``)."""
        return self._members(namespace, room).items()

    def _members(self, namespace: str, room: Any) -> dict[str, str]:
        """A copy of the members of ``room`` (or of several, each once, in python-socketio's
        order) as sid -> Engine.IO sid: a :class:`LeanRoom` read as the dict it is, a bidict
        through its ``_fwdm``."""
        ns = self.rooms.get(namespace, {})
        if hasattr(room, "__len__") and not isinstance(room, str):
            participants: dict[str, str] = {}
            for r in room:
                members = ns.get(r)
                if members is not None:
                    participants.update(members if type(members) is LeanRoom else members._fwdm)
            return participants
        members = ns.get(room)
        if members is None:
            return {}
        return (members if type(members) is LeanRoom else members._fwdm).copy()

    async def _send_each(self, event: str, eio_sids: list[str], packets: list[eio_packet.Packet]) -> None:
        """``packets`` to each socket: framed once and written where that is safe, queued
        for the others."""
        if not eio_sids:
            return
        eio = self.server.eio
        if not self.direct_emit:
            # As python-socketio's emit: a task per recipient and packet, all awaited.
            tasks = [
                asyncio.create_task(self.server._send_eio_packet(eio_sid, eio_pkt))
                for eio_sid in eio_sids
                for eio_pkt in packets
            ]
            await asyncio.wait(tasks)
            return
        if isinstance(eio, EngineIOServer):
            eio_sids = eio.write_frames(eio_sids, frames(packets), clock())
        for eio_sid in eio_sids:
            for eio_pkt in packets:
                try:
                    # An unbounded queue put: returns without suspending.
                    await eio.send_packet(eio_sid, eio_pkt)
                except Exception:  # one closing socket must not stop the broadcast
                    log.debug("could not queue %s for %s", event, eio_sid, exc_info=True)
