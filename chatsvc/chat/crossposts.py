"""Posts let through by other replicas, for the rules that must hold cluster-wide (issue 25).

Slow mode (chatsvc.chat.slowmode) and the duplicate-text spam rule (chatsvc.chat.spam) keep
what each user posted recently in memory, per replica. A user with sockets on two replicas
posts through either, so each replica must also know what the other let through. In
cluster mode every replica applies every message record of the room stream
(chatsvc.chat.streams, docs/delivery.md) anyway: :class:`StreamPosts` watches those records
and hands a post to the rules when it was appended by another replica (this replica's own
posts were counted when they were let through), saying whether its author has a socket
here. Each rule keeps what it needs: the duplicate rule only local users' texts (hashing
every text of the cluster on every replica would tax each foreign record); slow mode also
other users' posts in rooms this replica knows to be slowed (a time per user, no hashing),
so a user who reconnects to another replica is still slowed where that room has members.
Slow mode also learns of every ``room_mode`` record applied, so each replica knows at once
which rooms are slowed (and re-reads such a room's mode at its next post).

Nothing is added to the send path: no store round trip, no extra bus message. How stale:
another replica's post is known here once this replica applied its record, one bus hop
after it was appended (the sender's own ack waits for the same hop on its replica); posts of
one user on two replicas closer together than that both pass. A user who moves to a replica
(reconnects) is not caught there by a text repeated from before, nor by slow mode in a room
that replica had not seen slowed; after a restart, what was posted before is not known
(sockets reconnect after the stream's replay), as on one replica.

This relies on every replica reading every partition of the events topic (today's design,
chatsvc.bus.kafka_log). Interest-based routing (docs/scaling.md's design note) would have to
keep feeding these rules, e.g. by sending the posts of users seen on several replicas
(chatsvc.chat.online) over the control channel.
"""

from __future__ import annotations

from collections.abc import Callable

from chatsvc.chat.slowmode import SlowModes
from chatsvc.chat.spam import SpamFilter
from chatsvc.model.messages import Message, RoomEvent

#: The room stream's record of a change of a room's slow mode (chatsvc.chat.slowmode).
ROOM_MODE = "room_mode"


class StreamPosts:
    """A room-stream observer (``ChatService.watch_stream``) feeding other replicas' posts,
    and every replica's ``room_mode`` changes, to slow mode and the duplicate rule."""

    def __init__(self, local: Callable[[str], bool], slow: SlowModes, spam: SpamFilter | None) -> None:
        """``local(user_id)``: whether the user has a socket on this replica."""
        self._local = local
        self._slow = slow
        self._spam = spam

    def __call__(self, record: Message | RoomEvent, here: bool) -> None:
        if isinstance(record, RoomEvent):
            if record.kind == ROOM_MODE:
                seconds = record.payload.get("slow_mode_seconds")
                self._slow.announced(record.room, seconds if isinstance(seconds, int) else 0)
            return
        if here or record.kind != "user":
            return
        local = self._local(record.user_id)
        self._slow.seen(record, local=local)
        if self._spam is not None:
            self._spam.seen(record, local=local)
