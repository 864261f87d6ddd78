"""Cluster control: typed messages between replicas, and actions every replica applies.

The bus carries two kinds of traffic. Socket.IO packets (room emits) go through
python-socketio's client manager. Everything else the replicas must agree on travels as
*control messages* (``ManagedBus.publish_control``/``on_control``): JSON objects that
reach every **other** replica. This module gives them structure:

* :class:`ControlRouter` stamps each outgoing message with ``type``, ``replica`` and a
  format version ``v``, and dispatches incoming ones by ``type`` to the component that
  owns it (``presence.*`` → :mod:`chatsvc.chat.cluster_presence`, ``moderation.*`` →
  :mod:`chatsvc.chat.moderation`, ``action``/``action.reply`` → :class:`ClusterActions`).
  A failing handler is logged and never reaches the bus's consumer loop.
* :class:`ClusterActions` runs a named action (disconnect a user, kick from a room) on
  this replica and on every live peer, and collects how many sockets each one touched:
  the request is broadcast, each peer applies it to its own sockets and broadcasts a
  reply addressed to the requester, who waits for the peers it knew of (from presence
  heartbeats) for a bounded time. A peer that does not answer in time is reported, not
  waited for: it still applies the action when the request reaches it.

With the in-process bus (one replica) publishing is a no-op and there are no peers, so
everything degrades to local behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from chatsvc.errors import ChatError

log = logging.getLogger(__name__)

#: Format version of control messages; receivers ignore versions they do not know.
CONTROL_VERSION = 1

Publish = Callable[[dict[str, Any]], Awaitable[None]]
ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]
ActionHandler = Callable[[dict[str, Any]], Awaitable[int]]


class ControlRouter:
    """Sends typed control messages and routes received ones to their owner."""

    def __init__(self, publish: Publish, replica_id: str) -> None:
        self._publish = publish
        self.replica_id = replica_id
        self._routes: dict[str, ControlHandler] = {}
        self._warned: set[str] = set()

    def route(self, type_: str, handler: ControlHandler) -> None:
        """Deliver received messages of ``type_`` to ``handler``."""
        if type_ in self._routes:
            raise ValueError(f"control type {type_!r} already routed")
        self._routes[type_] = handler

    async def publish(self, type_: str, body: dict[str, Any]) -> None:
        """Send ``body`` as a ``type_`` message to every other replica.

        Raises ``BusUnavailable`` (or another ``ChatError``) when the bus cannot send.
        """
        await self._publish({**body, "type": type_, "replica": self.replica_id, "v": CONTROL_VERSION})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """The bus's control handler: validate the envelope, then call the route."""
        if not isinstance(message, dict):
            self._warn_once("non-object", "ignoring a control message that is not an object")
            return
        type_, sender = message.get("type"), message.get("replica")
        if not isinstance(type_, str) or not isinstance(sender, str) or not sender:
            self._warn_once("envelope", "ignoring a control message without type/replica")
            return
        if sender == self.replica_id or message.get("v") != CONTROL_VERSION:
            return
        handler = self._routes.get(type_)
        if handler is None:
            self._warn_once(f"type:{type_[:40]}", f"ignoring control messages of unknown type {type_[:40]!r}")
            return
        try:
            await handler(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control message %s from %s failed", type_, sender)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(text)


@dataclass(frozen=True, slots=True)
class Reach:
    """How far a cluster action got: sockets touched, replicas that answered, and those that did not."""

    sockets: int
    replicas: int
    unanswered: tuple[str, ...] = ()


@dataclass
class _Pending:
    expected: set[str]
    sockets: int = 0
    answered: set[str] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ClusterActions:
    """Run an action on every replica and add up the sockets it touched."""

    def __init__(
        self,
        router: ControlRouter,
        peers: Callable[[], Collection[str]],
        *,
        timeout: float = 2.0,
    ) -> None:
        self._router = router
        self._peers = peers
        self._timeout = timeout
        self._handlers: dict[str, ActionHandler] = {}
        self._pending: dict[str, _Pending] = {}
        router.route("action", self._on_request)
        router.route("action.reply", self._on_reply)

    def register(self, action: str, handler: ActionHandler) -> None:
        """``handler(args)`` applies ``action`` to this replica's sockets and returns how many."""
        self._handlers[action] = handler

    async def run(self, action: str, args: dict[str, Any]) -> Reach:
        """Apply ``action`` here and on every live peer; wait (bounded) for the peers' counts."""
        handler = self._handlers[action]
        request_id = uuid.uuid4().hex
        pending = _Pending(expected=set(self._peers()))
        self._pending[request_id] = pending
        try:
            # Sent even when no peer is known yet (a replica that just started has not
            # heard the others): they still apply it, we just cannot wait for them.
            try:
                await self._router.publish("action", {"id": request_id, "action": action, "args": args})
            except ChatError as exc:
                # Local sockets are still handled; the peers are reported as unanswered.
                log.warning("could not send %s to the other replicas: %s", action, exc.message)
                pending.done.set()
            local = await handler(args)
            if pending.expected and not pending.done.is_set():
                try:
                    async with asyncio.timeout(self._timeout):
                        await pending.done.wait()
                except TimeoutError:
                    pass
        finally:
            self._pending.pop(request_id, None)
        unanswered = tuple(sorted(pending.expected - pending.answered))
        if unanswered:
            log.warning("%s: no answer from replica(s) %s", action, ", ".join(unanswered))
        return Reach(local + pending.sockets, 1 + len(pending.answered), unanswered)

    async def _on_request(self, message: dict[str, Any]) -> None:
        request_id, action, args = message.get("id"), message.get("action"), message.get("args")
        if not isinstance(request_id, str) or not isinstance(action, str) or not isinstance(args, dict):
            return
        handler = self._handlers.get(action)
        if handler is None:
            log.warning("ignoring unknown cluster action %r", action[:40])
            return
        sockets = 0
        try:
            sockets = await handler(args)
        finally:
            # Answer even when the handler failed, so the requester does not wait for nothing.
            try:
                await self._router.publish(
                    "action.reply", {"id": request_id, "to": message["replica"], "sockets": sockets}
                )
            except ChatError as exc:
                log.warning("could not answer %s from %s: %s", action, message["replica"], exc.message)

    async def _on_reply(self, message: dict[str, Any]) -> None:
        if message.get("to") != self._router.replica_id:
            return
        pending = self._pending.get(str(message.get("id")))
        sockets = message.get("sockets")
        if pending is None or not isinstance(sockets, int) or message["replica"] in pending.answered:
            return
        pending.answered.add(message["replica"])
        pending.sockets += sockets
        if pending.expected <= pending.answered:
            pending.done.set()
