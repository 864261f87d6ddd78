"""The namespace's core room events: ``join``, ``leave``, ``message``, ``typing``,
``history``, ``read``, ``edit``, ``delete``. Kept out of chatsvc.chat.namespace (connections,
sessions and dispatch), which routes each client event here after its rate limit, payload
bound and access check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from chatsvc.chat import payloads
from chatsvc.chat.access import RoomAccess
from chatsvc.chat.conversations import Conversations
from chatsvc.chat.edits import Edits
from chatsvc.chat.membership import Membership
from chatsvc.chat.mentions import Mentions, mentions
from chatsvc.chat.message_events import MessageEvents
from chatsvc.chat.modes import RoomModes
from chatsvc.chat.recovery_base import SessionRecovery
from chatsvc.chat.service import ChatService, Draft
from chatsvc.chat.threads import Threads
from chatsvc.chat.wire import event_wire, message_wire
from chatsvc.errors import Forbidden
from chatsvc.model.rooms import members_only
from chatsvc.settings import Limits

if TYPE_CHECKING:
    from chatsvc.chat.namespace import Connection

Ack = dict[str, Any]
Handler = Callable[[str, "Connection", dict[str, Any]], Awaitable[Ack]]


class RoomEvents:
    """Handlers of the core room events."""

    def __init__(
        self,
        service: ChatService,
        limits: Limits,
        *,
        access: RoomAccess,
        membership: Membership,
        recovery: SessionRecovery,
        threads: Threads,
        mentions: Mentions,
        edits: Edits,
        messages: MessageEvents,
        modes: RoomModes,
        conversations: Conversations | None,
        is_muted: Callable[[str, str], Awaitable[bool]] | None,
    ) -> None:
        self._service = service
        self._limits = limits
        self._access = access
        self._membership = membership
        self._recovery = recovery
        self._threads = threads
        self._mentions = mentions
        self._edits = edits
        self._messages = messages
        self._modes = modes
        self._conversations = conversations
        self._is_muted = is_muted

    def handlers(self) -> dict[str, Handler]:
        """The client events, by name."""
        return {
            "join": self.join,
            "leave": self.leave,
            "message": self.message,
            "typing": self.typing,
            "history": self.history,
            "read": self.read,
            "edit": self.edit,
            "delete": self.delete,
        }

    async def join(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``join {room, since?}``: enter the room; with ``since`` the catch-up after it."""
        room = self._access.allowed(conn, payload)
        since = payloads.since(payload)
        # Subscribed before the gap is read, left again if reading it fails.
        async with self._membership.enter(sid, conn, room) as entered:
            ack: Ack = {"ok": True, "room": room}
            if isinstance(since, tuple):
                caught = await self._service.catch_up_from(room, *since)
                epoch = await self._service.epoch()
                shown = await self._messages.annotate(room, caught.messages, conn.identity.user_id)
                ack["messages"] = [message_wire(m, epoch) for m in shown]
                ack["events"] = [event_wire(e, epoch) for e in caught.events]
                ack["events"] += await self._threads.implied(room, caught.messages)  # cluster mode
                ack["has_more"] = caught.more
                ack["reset"] = caught.reset
                ack["pos"] = caught.last
            elif since is not None:
                missed, more = await self._service.catch_up(room, since)
                ack["messages"] = [self._service.wire(m) for m in missed]
                ack["has_more"] = more
            ack["unread"] = await self._service.unread(room, conn.identity)
            ack.update(await self._modes.join_info(room))
        ack["online"] = entered.online
        if (
            self._conversations is not None
            and self._conversations.directory is not None
            and not members_only(room)
        ):
            await self._conversations.directory.joined(conn.identity.user_id, room)
        return ack

    async def leave(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``leave {room}``: leave the room (announced)."""
        room = self._access.joined(conn, payload)
        await self._membership.leave(sid, conn, room)
        return {"ok": True, "room": room}

    async def message(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``message {room, text, client_msg_id?, reply_to?, mentions?, sentiment?}``: post."""
        room = self._access.joined(conn, payload)
        text = payloads.text(payload, self._limits.message_bytes)
        client_msg_id = payloads.client_msg_id(payload)
        # A plain message pays nothing for the features it does not use (issue 26): each
        # optional field is read only when present (absent and null read the same).
        parent_id = (
            payloads.message_id(payload, "reply_to", required=False) if "reply_to" in payload else None
        )
        wanted = mentions(payload, self._limits.mentions_per_message) if "mentions" in payload else ()
        identity = conn.identity
        if self._is_muted is not None and await self._is_muted(room, identity.user_id):
            raise Forbidden(f"you are muted in {room}")
        reply_to = None if parent_id is None else await self._threads.parent(room, parent_id)
        mentioned = await self._mentions.readable(room, identity.user_id, wanted) if wanted else ()
        market = await self._modes.admit(room, identity, text, payload)
        message, created, wire = await self._service.post_with_wire(
            Draft(
                room,
                identity,
                text,
                client_msg_id,
                reply_to=reply_to,
                mentions=mentioned,
                tickers=market.tickers,
                sentiment=market.sentiment,
            ),
            skip_sid=sid,
        )
        if created:
            await self._modes.posted(message, created)
        if message.reply_to is not None:  # also on a retry: the reply row is idempotent
            await self._threads.replied(message, created=created)
        if created and message.mentions:
            await self._mentions.notify(message)
        self._recovery.posted(sid, message)  # never replayed to its sender
        if self._conversations is not None and self._conversations.notifier is not None:
            await self._conversations.notifier.posted(message, created=created)  # embedded only
        return {"ok": True, "message": wire, "duplicate": not created}

    async def typing(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``typing {room, typing}``: relayed to the room, never stored."""
        room = self._access.joined(conn, payload)
        typing = payloads.flag(payload, "typing")
        await self._service.typing(room, conn.identity, typing, skip_sid=sid)
        return {"ok": True}

    async def history(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``history {room, before?, limit?}``: one page, newest first, without blocked users."""
        room = self._access.allowed(conn, payload)
        before = payloads.message_id(payload, "before", required=False)
        limit = payloads.page_limit(payload, self._limits.history_page_default, self._limits.history_page_max)
        # Read together: whom the reader blocks may be a store read of its own.
        page, hidden = await asyncio.gather(
            self._service.history(room, before, limit), self._access.hidden_from(conn)
        )
        shown = await self._messages.annotate(
            room, [m for m in page.messages if m.user_id not in hidden], conn.identity.user_id
        )
        return {
            "ok": True,
            "room": room,
            "messages": [self._service.wire(m) for m in shown],
            "next_before": page.next_before,
        }

    async def read(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``read {room, message_id}``: store the read marker and tell the room."""
        room = self._access.joined(conn, payload)
        message_id = payloads.message_id(payload, "message_id", required=True)
        assert message_id is not None
        await self._service.mark_read(room, conn.identity, message_id, skip_sid=sid)
        return {"ok": True}

    async def edit(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``edit {room, id, text, mentions?}``: change a message (author or admin)."""
        room = self._access.allowed(conn, payload)
        message_id = payloads.message_id(payload, "id", required=True)
        text = payloads.text(payload, self._limits.message_bytes)
        assert message_id is not None
        message = await self._edits.edit(
            room, message_id, text, conn.identity, payload, tickers=self._modes.tickers(text)
        )
        return {"ok": True, "message": self._service.wire(message)}

    async def delete(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """``delete {room, id}``: delete a message (author, admin or room moderator)."""
        room = self._access.allowed(conn, payload)
        message_id = payloads.message_id(payload, "id", required=True)
        assert message_id is not None
        moderator = self._conversations is not None and await self._conversations.moderates(
            room, conn.identity.user_id
        )
        await self._service.delete(room, message_id, conn.identity, moderator=moderator)
        return {"ok": True, "id": message_id}
