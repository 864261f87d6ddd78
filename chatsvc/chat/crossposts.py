"""Posts let through by other replicas, for the rules that must hold cluster-wide (issue 25).

Slow mode (chatsvc.chat.slowmode) and the duplicate-text spam rule (chatsvc.chat.spam) keep
what each user posted recently in memory, per replica. A user with sockets on two replicas
posts through either, so each replica must also know what the other let through. In
cluster mode every replica applies every message record of the room stream
(chatsvc.chat.streams, docs/delivery.md) anyway: :class:`StreamPosts` watches those records
and hands a post to the rules when it was appended by another replica (this replica's own
posts were counted when they were let through) and its author has a socket here (a replica
keeps nothing about users it does not serve, and pays one dict lookup per foreign record).

Nothing is added to the send path: no store round trip, no extra bus message. How stale:
another replica's post is known here once this replica applied its record, one bus hop
after it was appended (the sender's own ack waits for the same hop on its replica); posts of
one user on two replicas closer together than that both pass. After a restart, what was
posted before is not known (sockets reconnect after the stream's replay), as on one replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from chatsvc.model.messages import Message


class PostRule(Protocol):
    """A rule that remembers posts (``SlowModes``, ``SpamFilter``)."""

    def seen(self, message: Message) -> None:
        """Another replica let ``message`` through."""


class StreamPosts:
    """A room-stream observer (``ChatService.watch_stream``) feeding other replicas' posts of
    local users to the rules."""

    def __init__(self, local: Callable[[str], bool], *rules: PostRule) -> None:
        """``local(user_id)``: whether the user has a socket on this replica."""
        self._local = local
        self._rules = rules

    def __call__(self, message: Message, here: bool) -> None:
        if here or message.kind != "user" or not self._local(message.user_id):
            return
        for rule in self._rules:
            rule.seen(message)
