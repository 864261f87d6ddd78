// Events the server sends (README, "Protocol", "Replies and threads"): each updates the
// room's state and re-renders what shows it. Catch-up answers (`join {since}`) list the
// same events, named by `event`, and go through applyEvent.
import { showChanged, showDeleted } from "./compose.js";
import { $ } from "./dom.js";
import { scheduleRead } from "./reads.js";
import { dropRoom, roomState } from "./rooms.js";
import { app } from "./state.js";
import { banner, toast } from "./status.js";
import { SHOW_MS } from "./typing.js";

function onMessage(message) {
  // Private and direct rooms deliver without join: a conversation may start here.
  const room = app.rooms.get(message.room) || app.conversations.arrived(message);
  if (!room) return;
  const isNew = room.put(message);
  const view = app.views.get(room.name);
  view.show([message]);
  app.thread.arrived(message);
  room.typing.delete(message.user.id);
  if (isNew && message.user.id !== app.me.sub) {
    const seen = app.active === room.name && view.atBottom() && document.visibilityState === "visible";
    if (!seen) {
      room.unread += 1;
      // A mention of the reader has its own notice (the `mention` event).
      const mentioned = Array.isArray(message.mentions) && message.mentions.includes(app.me.sub);
      if (room.kind !== "public" && !mentioned) app.conversations.notice(room, message);
    }
  }
  if (isNew) app.sidebar.update(room, app.active === room.name);
  app.header.renderTyping();
  scheduleRead(room);
}

function onEdited(message) {
  const room = app.rooms.get(message.room);
  if (!room) return;
  room.seePos(message.pos);
  showChanged(room, room.edited(message));
  app.sidebar.update(room, app.active === room.name); // the preview may be that message
}

function onDeleted(event) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  room.seePos(event.pos);
  showDeleted(room, event.id);
}

/** A parent's reply count changed (a new reply): `message_updated`. */
function onUpdated(event) {
  const room = app.rooms.get(event.room);
  room?.seePos(event.pos);
  showChanged(room, room?.annotate(event.id, { reply_count: event.reply_count, last_reply_at: event.last_reply_at }));
}

function onReaction(event) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  room.seePos(event.pos);
  const own = event.user?.id === app.me.sub ? event.action : null;
  showChanged(room, room.reacted(event.id, event.emoji, event.count, own));
  app.thread.reacted(room, event.id, event.emoji, event.count, own);
}

function onPinned(event, pinned) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  room.seePos(event.pos);
  if (pinned) room.pinned.add(event.id);
  else room.pinned.delete(event.id);
  app.pins.refresh(room);
  const message = room.messages.get(event.id);
  if (message) showChanged(room, message);
}

/** Someone mentioned the signed-in user, in a room it may not have joined or even know. */
function onMention(event) {
  const message = event.message;
  if (!message || message.user?.id === app.me.sub) return;
  const known = app.rooms.get(event.room);
  const room = known || roomState(event.room);
  if (!known) room.title = app.conversations.titleOf(event.room);
  const view = app.views.get(room.name);
  const seen = app.active === room.name && view.atBottom() && document.visibilityState === "visible";
  if (!seen) {
    room.mentions += 1;
    const who = message.user.name || message.user.id;
    toast(`${who} mentioned you in ${room.title}: ${message.text.slice(0, 80)}`, "notice");
  }
  app.sidebar.update(room, app.active === room.name);
}

function onTyping(event) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  if (Array.isArray(event.users)) {
    // A big room's aggregate {users: first few, count}: it replaces what was known.
    const until = Date.now() + SHOW_MS;
    const others = event.users.filter((u) => u.id !== app.me.sub);
    room.typing = new Map(others.map((u) => [u.id, { name: u.name || u.id, until }]));
    const count = event.count - (others.length < event.users.length ? 1 : 0);
    room.typingCount = { count, until };
    for (const u of others) room.seeUser(u);
    if (room.name === app.active) app.header.renderTyping();
    return;
  }
  if (event.user.id === app.me.sub) return;
  room.seeUser(event.user);
  if (event.typing) room.typing.set(event.user.id, { name: event.user.name || event.user.id, until: Date.now() + SHOW_MS });
  else room.typing.delete(event.user.id);
  if (room.name === app.active) app.header.renderTyping();
}

function onRead(event) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  if (Array.isArray(event.readers)) {
    // A big room's aggregate: the first few readers of the last second, each with their read.
    for (const r of event.readers) {
      if (r.id !== app.me.sub) room.reads.set(r.id, { name: r.name || r.id, message_id: r.message_id });
    }
    app.views.get(room.name).renderReceipts();
    return;
  }
  if (event.user.id === app.me.sub) return;
  room.seeUser(event.user);
  room.reads.set(event.user.id, { name: event.user.name || event.user.id, message_id: event.message_id });
  app.views.get(room.name).renderReceipts();
}

function onPresence(event) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  room.online = event.online;
  if (event.action === "leave") room.typing.delete(event.user.id);
  else if (event.user) room.seeUser(event.user);
  app.sidebar.update(room, app.active === room.name);
  if (room.name !== app.active) return;
  app.header.render();
  if (event.user) {
    // A big room's count names nobody.
    const who = event.user.name || event.user.id;
    $("room-activity").textContent = event.action === "join" ? `${who} joined` : `${who} left`;
  }
}

function onKicked(event) {
  const title = app.conversations.titleOf(event.room);
  banner(`Removed from ${title}: ${event.reason}`);
  dropRoom(event.room);
}

/** Slow/surge mode, sentiment, room info (issue 25; the wire names are the issue's). */
function onRoomInfo(event) {
  const room = app.rooms.get(event?.room);
  if (!room) return;
  room.seePos(event.pos); // room_mode is a room-stream record (replayed by join {since})
  room.info(event);
  if (room.name === app.active) app.header.render();
}

export const LIVE = {
  message: onMessage,
  message_edited: onEdited,
  message_deleted: onDeleted,
  message_updated: onUpdated,
  reaction: onReaction,
  pinned: (event) => onPinned(event, true),
  unpinned: (event) => onPinned(event, false),
  mention: onMention,
  typing: onTyping,
  read: onRead,
  presence: onPresence,
  kicked: onKicked,
  room_mode: onRoomInfo,
  sentiment: onRoomInfo,
  room_info: onRoomInfo,
  member_added: (event) => app.conversations.onMemberAdded(event),
  member_removed: (event) => app.conversations.onMemberRemoved(event),
  role_changed: (event) => app.conversations.onRoleChanged(event),
};

/** One event of a catch-up answer: `{...live payload, event: name, pos}`. */
export function applyEvent(event) {
  const handler = CATCH_UP[event.event];
  if (handler) handler(event);
  else app.rooms.get(event.room)?.seePos(event.pos); // a kind this client does not show
}

const CATCH_UP = {
  message_edited: onEdited,
  message_deleted: onDeleted,
  message_updated: onUpdated,
  reaction: onReaction,
  pinned: LIVE.pinned,
  unpinned: LIVE.unpinned,
  room_mode: onRoomInfo,
};
