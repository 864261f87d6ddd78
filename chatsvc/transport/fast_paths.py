"""The switches of the transport's fast paths (``CHATSVC_FAST_PATHS``, ``CHATSVC_FAST_PATHS_OFF``).

Each fast path replaces some stock python-socketio/python-engineio code with a cheaper
equivalent (same packets, same order, same wire). Turned off, the stock code runs instead,
so a production incident can rule the fast paths out, and the benchmark measures each one
against the code it replaces. What is never switched off: the security fixes (bad packets
counted, bounded polling POSTs, binary packets refused, declared events only, bounded
outgoing and incoming queues) and the control path (Engine.IO PING/PONG/CLOSE never wait
behind a connection's events).

=====================  ================================================================
name                   replaces
=====================  ================================================================
``frame-once``         python-engineio's queue and writer for each recipient of a
                       broadcast, and for every single send (acks): framed once, written
                       to idle websockets (:mod:`chatsvc.transport.frames`)
``lean-socket``        python-engineio's socket queue, ping task and websocket handler
                       (:mod:`chatsvc.transport.lean_socket`; also the HTTP-state trimming
                       and the websocket's life run above python-engineio's handshake
                       frames in one coroutine frame,
                       :meth:`chatsvc.transport.engine.EngineIOServer.handle_request`;
                       and python-socketio's ``bidict`` for a room other than the
                       namespace's own, :class:`chatsvc.transport.broadcast.LeanRoom`)
``receive-packet``     ``AsyncSocket.receive`` -> ``_trigger_event`` for a received
                       Socket.IO packet (:func:`chatsvc.transport.lean_socket.receive_packet`)
``packet-serializer``  ``socketio.packet.Packet.data_is_binary``, and the JSON encoder and
                       decoder built per packet (``engineio.json``)
                       (:mod:`chatsvc.transport.socketio_packet`)
``direct-emit``        ``socketio.AsyncManager.emit``'s task per recipient
                       (:mod:`chatsvc.transport.broadcast`)
``event-worker``       chatsvc's own worker task per burst of a connection's events: the
                       worker parks for the next event for a few seconds instead
                       (:mod:`chatsvc.transport.events`)
``event-dispatch``     python-socketio's ``_handle_event`` -> ``_handle_event_internal`` ->
                       ``_trigger_event`` for a client event: its namespace handler called
                       and its ack built in one step (:mod:`chatsvc.transport.sioserver`)
=====================  ================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chatsvc.settings import FAST_PATHS

#: The names ``CHATSVC_FAST_PATHS_OFF`` takes, one per field of :class:`FastPaths`: the
#: settings' tuple itself (the settings validate the variable and sit below the transport,
#: so the names live there once).
NAMES = FAST_PATHS


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths are on (all by default)."""

    frame_once: bool = True
    lean_socket: bool = True
    receive_packet: bool = True
    packet_serializer: bool = True
    direct_emit: bool = True
    event_worker: bool = True
    event_dispatch: bool = True

    @classmethod
    def without(cls, names: Iterable[str]) -> FastPaths:
        """Every fast path on but those named (``NAMES``); ValueError for an unknown name."""
        off = set(names)
        unknown = sorted(off - set(NAMES))
        if unknown:
            raise ValueError(f"unknown fast paths: {', '.join(unknown)}")
        return cls(**{name.replace("-", "_"): name not in off for name in NAMES})

    @classmethod
    def none(cls) -> FastPaths:
        """Every fast path off: python-socketio's and python-engineio's stock code paths."""
        return cls.without(NAMES)
