"""Blocking (issue 24): ``block``/``unblock``/``blocked``, and what a block hides.

* The store keeps who blocks whom (one partition per blocker, at most
  ``CHATSVC_MAX_BLOCKS_PER_USER``). A blocked user cannot open a DM with, or add to a
  room, the user who blocked it (:meth:`Blocks.is_blocked`, asked by the conversation rules).
* The blocker's sockets do not receive the blocked user's ``message``, ``message_edited``
  or ``typing`` in any room. Filtering happens per recipient, on each replica, only for
  its local sockets of users who block someone: :meth:`Blocks.skipped` is the broadcast
  path's recipient filter (chatsvc.transport.broadcast), which answers ``None`` at once for an event
  whose author nobody here blocks, so every other recipient still gets the one frame.
* Lists of connected users are cached per replica (loaded at connect); a change is applied
  here and announced as a ``blocks.changed`` control message so every replica reloads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Sequence
from typing import Any

from chatsvc.chat.cluster import ControlRouter
from chatsvc.errors import BlockLimit, ChatError, InvalidPayload
from chatsvc.settings import Limits
from chatsvc.store.base import BlockStore

log = logging.getLogger(__name__)

#: Events a blocker's sockets do not receive from the users it blocks (by ``user.id``).
FILTERED = frozenset({"message", "message_edited", "typing"})
#: The block list of a user who blocks nobody: one shared empty set (each ``frozenset()``
#: is a new 216-byte object, held per connected user).
NOBODY: frozenset[str] = frozenset()


class Blocks:
    """Block records, the per-replica cache of connected users' lists, and the filter."""

    def __init__(
        self,
        store: BlockStore,
        router: ControlRouter,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._router = router
        self._cap = limits.blocks_per_user
        self._clock = clock
        #: user -> whom it blocks, for users with a socket here.
        self._lists: dict[str, frozenset[str]] = {}
        #: A connected user's sockets here: the sid itself for one (nearly everyone; a set
        #: each was 216 bytes more per connected user), a set for more.
        self._sockets: dict[str, str | set[str]] = {}
        #: blocked user -> the local sockets that must not receive it (the filter's index).
        self._hidden: dict[str, set[str]] = {}
        router.route("blocks.changed", self._on_changed)

    # -- the broadcast path's recipient filter ------------------------------------------------

    def skipped(self, event: str, args: Sequence[Any]) -> Container[str] | None:
        """The local sockets that must not get this event (None: every recipient gets it)."""
        if not self._hidden or event not in FILTERED or not args or not isinstance(args[0], dict):
            return None
        user = args[0].get("user")
        author = user.get("id") if isinstance(user, dict) else None
        return self._hidden.get(author) if isinstance(author, str) else None

    # -- sockets --------------------------------------------------------------------------------

    async def attach(self, sid: str, user_id: str) -> None:
        """A socket of ``user_id`` connected here: filter for it from now on."""
        held = self._sockets.get(user_id)
        if held is None:
            self._sockets[user_id] = sid
        elif isinstance(held, str):
            if held != sid:
                self._sockets[user_id] = {held, sid}
        else:
            held.add(sid)
        if user_id in self._lists:
            for blocked in self._lists[user_id]:
                self._hidden.setdefault(blocked, set()).add(sid)
            return
        await self._load(user_id)

    def detach(self, sid: str, user_id: str) -> None:
        """The socket is gone."""
        held = self._sockets.get(user_id)
        if held is None:
            return
        if isinstance(held, str):
            left = held != sid
        else:
            held.discard(sid)
            left = bool(held)
        for blocked in self._lists.get(user_id, frozenset()):
            self._unhide(blocked, sid)
        if not left:
            del self._sockets[user_id]
            self._lists.pop(user_id, None)

    def _unhide(self, blocked: str, sid: str) -> None:
        hidden = self._hidden.get(blocked)
        if hidden is not None:
            hidden.discard(sid)
            if not hidden:
                del self._hidden[blocked]

    async def _load(self, user_id: str) -> None:
        try:
            blocked = frozenset(await self._store.blocks_of(user_id, limit=self._cap))
        except ChatError as exc:
            # Keep what we had (nothing for a new user): a block still holds for the
            # rules, which read the store; only live filtering waits for the next change.
            log.warning("could not load a user's blocks (%s)", exc.code)
            return
        self._install(user_id, blocked)

    def _install(self, user_id: str, blocked: frozenset[str]) -> None:
        held = self._sockets.get(user_id)
        if held is None:
            return  # disconnected while loading
        sockets = (held,) if isinstance(held, str) else held
        for old in self._lists.get(user_id, frozenset()) - blocked:
            for sid in sockets:
                self._unhide(old, sid)
        self._lists[user_id] = blocked or NOBODY
        for new in blocked:
            self._hidden.setdefault(new, set()).update(sockets)

    # -- records ---------------------------------------------------------------------------------

    async def hidden_from(self, user_id: str) -> frozenset[str]:
        """Whom ``user_id`` blocks (its history and previews leave them out)."""
        cached = self._lists.get(user_id)
        if cached is not None:
            return cached
        return frozenset(await self._store.blocks_of(user_id, limit=self._cap))

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` blocks ``blocked`` (the store: correct across replicas)."""
        return await self._store.is_blocked(blocker, blocked)

    async def block(self, user_id: str, other: str) -> None:
        """``user_id`` blocks ``other`` (again: nothing changes); ``block_limit`` past the bound."""
        if other == user_id:
            raise InvalidPayload("'user' must be another user")
        if await self._store.is_blocked(user_id, other):
            return
        if len(await self._store.blocks_of(user_id, limit=self._cap)) >= self._cap:
            raise BlockLimit(f"at most {self._cap} users blocked")
        await self._store.put_block(user_id, other, int(self._clock() * 1000))
        await self._changed(user_id)

    async def unblock(self, user_id: str, other: str) -> None:
        """Lift a block (no error if there was none)."""
        await self._store.delete_block(user_id, other)
        await self._changed(user_id)

    async def blocked(self, user_id: str) -> list[str]:
        """Whom ``user_id`` blocks, by id."""
        return await self._store.blocks_of(user_id, limit=self._cap)

    async def _changed(self, user_id: str) -> None:
        if user_id in self._sockets:
            await self._load(user_id)
        try:
            await self._router.publish("blocks.changed", {"user": user_id})
        except ChatError as exc:
            log.warning("a block change was stored but not announced (%s)", exc.code)

    async def _on_changed(self, message: dict[str, Any]) -> None:
        user_id = message.get("user")
        if isinstance(user_id, str) and user_id in self._sockets:
            await self._load(user_id)
