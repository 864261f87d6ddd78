"""Surge mode (issue 25): a public room flooded with messages slows itself down.

The rate is the cluster's, derived from the room's stream as the store holds it: the
messages stored in the last ``CHATSVC_SURGE_WINDOW`` seconds, whichever replica stored
them (one bounded read of ids, at most ``rate x window + 1``). Every replica that stored a
message in the room in the last window (or knows the room is in surge) evaluates it once a
second; above ``CHATSVC_SURGE_RATE`` the room enters surge, at half of it or below it
leaves. The flip is a conditional write of the room's mode row (an LWT on ScyllaDB), so
replicas deciding at the same moment agree and exactly one of them announces ``room_mode
{room, slow_mode_seconds, reason: "surge" | "surge_end"}``; slow mode then holds on every
replica within a second (chatsvc.chat.slowmode). Counting in the store, not over the bus,
makes the decision the same everywhere without a consensus of our own: the store already
has every replica's messages, and the bus filter may keep a replica from seeing a room.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from chatsvc.chat.slowmode import SlowModes
from chatsvc.model.ids import lowest_id_at
from chatsvc.model.rooms import members_only
from chatsvc.settings import ModeSettings
from chatsvc.store.base import MessageStore

#: Rooms one replica watches at most (the most recently posted to).
WATCHED_ROOMS_MAX = 1000


class SurgeMonitor:
    """Decides when public rooms enter and leave surge."""

    def __init__(
        self,
        store: MessageStore,
        slow: SlowModes,
        settings: ModeSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._slow = slow
        self._window_ms = settings.surge_window_seconds * 1000
        #: Messages in the window above which the room surges (0: surge mode off).
        self._threshold = math.ceil(settings.surge_rate * settings.surge_window_seconds)
        self._clock = clock
        #: room -> when this replica last stored a message there (ms).
        self._watched: OrderedDict[str, int] = OrderedDict()
        #: Rooms this replica saw in surge: watched until they leave it.
        self._surging: set[str] = set()

    @property
    def enabled(self) -> bool:
        """Whether surge mode is on (``CHATSVC_SURGE_RATE`` > 0)."""
        return self._threshold > 0

    def posted(self, room: str) -> None:
        """A message was stored here in ``room``: watch it for the next window."""
        if not self.enabled or members_only(room):
            return
        self._watched[room] = int(self._clock() * 1000)
        self._watched.move_to_end(room)
        while len(self._watched) > WATCHED_ROOMS_MAX:
            self._watched.popitem(last=False)

    async def tick(self) -> None:
        """Evaluate every watched room once; forget rooms quiet here and not in surge."""
        now = int(self._clock() * 1000)
        for room, last in list(self._watched.items()):
            if now - last > self._window_ms and room not in self._surging:
                del self._watched[room]
        for room in [*self._watched, *(r for r in self._surging if r not in self._watched)]:
            await self.evaluate(room, now)

    async def evaluate(self, room: str, now_ms: int) -> None:
        """Count the room's window and flip its surge flag if the rate crossed a bound."""
        count = await self._store.count_after(
            room, lowest_id_at(now_ms - self._window_ms), self._threshold + 1
        )
        mode = await self._slow.mode(room, fresh=True)
        if not mode.surge and count > self._threshold:
            if await self._store.set_surge(room, True):
                await self._slow.announce(room, "surge")
            self._surging.add(room)
        elif mode.surge and count <= self._threshold // 2:
            if await self._store.set_surge(room, False):
                await self._slow.announce(room, "surge_end")
            self._surging.discard(room)
        elif mode.surge:
            self._surging.add(room)
