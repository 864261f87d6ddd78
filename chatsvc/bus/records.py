"""What a bus record says about itself before its body is decoded, and the adaptive fetch.

Every record a replica reads costs it CPU, and most of a busy cluster's records are room emits
for rooms the replica has nobody in (docs/scaling.md). The body is JSON; decoding it, and
handing it to python-socketio to find no recipient, is most of the per-record cost that
chatsvc (rather than the Kafka client) controls. So each record carries a few short headers:

* ``m``: the method (``emit``, ``disconnect``, ``enter_room``, ``control``, ``callback``...);
* ``h``: the ``host_id`` of the message (the publisher's; for a ``callback``, the host the
  ack is addressed to);
* ``r``: only on an emit to a *room* (not to a sid, not namespace-wide, no ack callback): the
  namespace, meaning "the record key is a room of this namespace".

:class:`RecordFilter` decides from key and headers alone whether a record can be skipped:
a room emit for a room with no local member, or a record python-socketio would drop anyway (the replica's own,
a callback for another host). Everything else is decoded: to-sid emits, disconnects, room
operations, control records, and any record without headers (an older replica during a
rolling upgrade). A skipped record is one no local socket could have received.

This module knows nothing of Kafka: headers are ``(name, bytes)`` pairs as Kafka clients
use them, and the fetch tuning only decides numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

METHOD = "m"
HOST = "h"
ROOM_OF = "r"

Headers = list[tuple[str, bytes]]
#: ``namespace -> rooms`` of this replica's sockets (python-socketio's manager ``rooms``).
LocalRooms = Mapping[str, Mapping[Any, Any]]


def record_headers(message: dict[str, Any], *, room_emit: bool) -> Headers:
    """The headers of ``message``'s record; ``room_emit`` marks its key as a room."""
    headers: Headers = [(METHOD, str(message.get("method", "")).encode())]
    host = message.get("host_id")
    if isinstance(host, str):
        headers.append((HOST, host.encode()))
    if room_emit:
        headers.append((ROOM_OF, str(message.get("namespace") or "/").encode()))
    return headers


def is_room_emit(message: dict[str, Any], rooms: LocalRooms) -> bool:
    """Whether an outgoing ``message`` is an emit to a room (its key then names the room).

    An emit to a sid looks the same as one to a room (python-socketio passes ``to`` as
    ``room``); a sid of this replica is told apart because python-socketio puts each socket
    in a room named after its sid, holding just that sid. A sid of another replica cannot be
    told apart, and chatsvc never emits to one over the bus; if something did, it would still
    arrive, because its replica has that sid as a room.
    """
    room = message.get("room")
    if message.get("method") != "emit" or not isinstance(room, str) or message.get("callback"):
        return False
    members = rooms.get(message.get("namespace") or "/", {}).get(room)
    return not (members is not None and room in members)


class RecordFilter:
    """Decides, from a record's key and headers, whether it can be skipped undecoded."""

    def __init__(self, host_id: str, rooms: Callable[[], LocalRooms]) -> None:
        self._host = host_id.encode()
        self._rooms = rooms

    def skip(self, key: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> str | None:
        """Why the record can be skipped (``own``, ``no_member``), or None to decode it."""
        method = host = namespace = None
        for name, value in headers or ():
            if name == METHOD:
                method = value
            elif name == HOST:
                host = value
            elif name == ROOM_OF:
                namespace = value
        if method is None:
            return None  # an older replica's record: decode as before
        if method == b"callback":
            # Addressed to the host that asked for the ack.
            return None if host == self._host else "own"
        if host == self._host:
            return "own"
        if namespace is None or key is None:
            return None
        try:
            room = key.decode()
            local = self._rooms().get(namespace.decode())
        except UnicodeDecodeError:
            return None
        if local is not None and room in local:
            return None
        return "no_member"


@dataclass(frozen=True)
class FetchMode:
    """What the consumer asks the broker: answer at ``min_bytes`` or after ``max_wait_ms``."""

    min_bytes: int
    max_wait_ms: int


#: aiokafka's defaults: the broker answers as soon as one byte is there (idle replicas pay
#: nothing, cross-replica latency is lowest).
EAGER = FetchMode(1, 500)
#: Batched (docs/scaling.md: 3-6x less CPU per record at 250-1,000 records/s, +2-5 ms latency,
#: ~5% of a core per replica for fetches answered empty). Pays from ~150 records/s.
BATCHED = FetchMode(65536, 5)


class AdaptiveFetch:
    """Chooses :data:`EAGER` or :data:`BATCHED` from the records/s read, with hysteresis.

    Switch to batched when a window of ``window`` seconds averages ``busy`` records/s or more,
    back to eager when one averages under ``quiet``. A fixed mode (``fixed``) never changes.
    """

    def __init__(
        self,
        fixed: FetchMode | None = None,
        *,
        busy: float = 200.0,
        quiet: float = 80.0,
        window: float = 5.0,
    ) -> None:
        self.fixed = fixed
        self.mode = fixed or EAGER
        self._busy = busy
        self._quiet = quiet
        self._window = window
        self._started: float | None = None
        self._count = 0

    def observe(self, records: int, now: float) -> FetchMode | None:
        """Count ``records`` just read at ``now``; the mode to switch to, if it changes (the
        caller reports a switch done with :meth:`switched`; until then :attr:`mode` stays, and
        the next window asks again)."""
        if self.fixed is not None:
            return None
        if self._started is None:
            self._started = now
        self._count += records
        elapsed = now - self._started
        if elapsed < self._window:
            return None
        rate = self._count / elapsed
        self._started, self._count = now, 0
        wanted = BATCHED if rate >= self._busy else EAGER if rate < self._quiet else self.mode
        return None if wanted == self.mode else wanted

    def switched(self, mode: FetchMode) -> None:
        """The consumer now fetches in ``mode``."""
        self.mode = mode
