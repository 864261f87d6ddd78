// The chat client: signs in, keeps the joined rooms in step with the server, and wires the
// views. Protocol: README.md, "Protocol". Each concern lives in its own module; features the
// server adds later (conversations, replies, reactions) get theirs and are wired here.
import { Blocks } from "./blocks.js";
import { AckError, Connection } from "./connection.js";
import { Conversations } from "./conversations.js";
import { $ } from "./dom.js";
import { MembersPanel } from "./members.js";
import { beforeExpiry } from "./refresh.js";
import { Room } from "./room.js";
import { Sidebar } from "./sidebar.js";
import { ackError, banner, clearBanner, setState, toast } from "./status.js";
import { Timeline } from "./timeline.js";
import * as tokens from "./token.js";
import { SHOW_MS, TypingSender, typingText } from "./typing.js";

const HISTORY_PAGE = 30;
const ROOMS_KEY = "chatsvc.rooms";
const READ_DELAY_MS = 300;

const app = {
  conn: null,
  me: null,
  rooms: new Map(), // name -> Room
  views: new Map(), // name -> Timeline
  active: null,
  devSignIn: false, // the server offers POST /dev/token (development only)
  cancelRefresh: () => {},
};

const typing = new TypingSender((room, on) => app.conn?.volatile("typing", { room, typing: on }));

const sidebar = new Sidebar({ join: (name) => joinRoom(name, { select: true }), select: selectRoom });

const blocks = new Blocks(
  (event, payload) => app.conn.request(event, payload),
  (unblocked) => {
    blocks.render(unblock);
    for (const [name, view] of app.views) {
      const room = app.rooms.get(name);
      // The server left an unblocked user's messages out of history: fetch it again.
      if (unblocked && room.historyLoaded) reloadHistory(room);
      else view.rerender();
    }
  },
);

function unblock(user) {
  blocks.unblock(user).catch((error) => reportAck("unblock", error));
}

const members = new MembersPanel(() => app.me, {
  list: (room) => conversations.listMembers(room),
  add: (room, user) => conversations.addMember(room, user),
  remove: (room, user) => removeMember(room, user),
});

const conversations = new Conversations({
  app,
  sidebar,
  members,
  roomState: (name) => roomState(name),
  dropRoom: (name) => dropRoom(name),
  joinRoom: (name, options) => joinRoom(name, options),
});

/** Remove a member; removing oneself is leaving, and the room goes from the list. */
async function removeMember(room, user) {
  const ok = await conversations.removeMember(room, user);
  if (ok && user === app.me.sub) dropRoom(room.name);
  return ok;
}

// ---- sign-in --------------------------------------------------------------------------

function signIn(token) {
  const claims = tokens.claims(token);
  if (!claims || typeof claims.sub !== "string") {
    $("signin-error").textContent = "invalid_token: that is not a JWT";
    return;
  }
  app.me = { sub: claims.sub, name: typeof claims.name === "string" && claims.name ? claims.name : claims.sub };
  tokens.save(token);
  $("signin-error").textContent = "";
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("sign-out").hidden = false;
  $("me").textContent = app.me.name;
  $("join-room").focus(); // the next thing to do, and where keyboard users land
  app.conn = new Connection(token, {
    connect: onConnect,
    sessionEnd: onSessionEnd,
    refused: (error) => signOut(`${error.code}: ${error.message}`),
    events: {
      message: onMessage,
      message_edited: onEdited,
      message_deleted: onDeleted,
      typing: onTyping,
      read: onRead,
      presence: onPresence,
      kicked: onKicked,
      member_added: (event) => conversations.onMemberAdded(event),
      member_removed: (event) => conversations.onMemberRemoved(event),
      role_changed: (event) => conversations.onRoleChanged(event),
    },
  });
  app.cancelRefresh = beforeExpiry(claims.exp, renewToken);
}

/** Before the token expires: a new one through the dev endpoint, else ask the user. */
async function renewToken() {
  const conn = app.conn;
  if (!conn) return;
  if (!app.devSignIn) {
    banner("Your token is about to expire: sign out and in again with a new one to stay connected.");
    return;
  }
  try {
    const token = await tokens.devToken(app.me.sub, app.me.name);
    await conn.request("refresh", { token });
    conn.socket.auth.token = token; // reconnects (and recoveries) use the new token too
    tokens.save(token);
    app.cancelRefresh = beforeExpiry(tokens.claims(token)?.exp, renewToken);
  } catch (error) {
    toast(`refresh: ${error.message}`);
  }
}

function signOut(reason = "") {
  app.cancelRefresh();
  typing.stop();
  app.conn?.close();
  app.conn = null;
  tokens.forget();
  sessionStorage.removeItem(ROOMS_KEY);
  for (const view of app.views.values()) view.element.remove();
  app.rooms.clear();
  app.views.clear();
  app.active = null;
  sidebar.clear();
  blocks.clear();
  members.close();
  renderHeader();
  setState("signed-out");
  $("chat").hidden = true;
  $("signin").hidden = false;
  $("sign-out").hidden = true;
  $("me").textContent = "";
  $("signin-error").textContent = reason;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});

$("dev-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    signIn(await tokens.devToken($("dev-sub").value.trim(), $("dev-name").value.trim()));
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("sign-out").addEventListener("click", () => signOut());

// ---- connection -----------------------------------------------------------------------

function onConnect(recovered) {
  if (recovered) {
    // The server kept our rooms and replays what we missed: nothing to rejoin.
    banner("Reconnected: the session was recovered, nothing was missed.");
    return;
  }
  clearBanner();
  blocks.load().catch((error) => reportAck("blocked", error));
  const joined = [...app.rooms.values()].filter((room) => room.joined).map((room) => room.name);
  const names = app.rooms.size ? joined : JSON.parse(sessionStorage.getItem(ROOMS_KEY) || "[]");
  // A fresh session has no rooms: join them again, catching up from the newest position seen.
  for (const name of names) joinRoom(name, { select: app.active === null || app.active === name });
  conversations.load();
}

function reportAck(what, error) {
  if (!(error instanceof AckError)) throw error;
  ackError(what, error);
}

function onSessionEnd(data) {
  const text = `Session ended: ${data.message} (${data.code})`;
  if (data.reconnect) {
    banner(`${text}. Reconnecting…`);
  } else {
    signOut(text);
    banner(text);
  }
}

// ---- rooms ----------------------------------------------------------------------------

function roomState(name) {
  let room = app.rooms.get(name);
  if (!room) {
    room = new Room(name);
    app.rooms.set(name, room);
    const view = new Timeline(room, app.me, {
      edit: editMessage,
      remove: deleteMessage,
      older: loadOlder,
      atBottom: scheduleRead,
      isBlocked: (user) => blocks.has(user),
      block: (user) => blocks.block(user).catch((error) => reportAck("block", error)),
      unblock,
      dm: (user) => conversations.openDm(user),
    });
    app.views.set(name, view);
    $("timelines").append(view.element);
  }
  return room;
}

function dropRoom(name) {
  app.rooms.delete(name);
  app.views.get(name)?.element.remove();
  app.views.delete(name);
  sidebar.remove(name);
  saveRooms();
  if (app.active === name) {
    app.active = null;
    const next = app.rooms.keys().next();
    if (!next.done) selectRoom(next.value);
    else renderHeader();
  }
}

function saveRooms() {
  const joined = [...app.rooms.values()].filter((room) => room.joined).map((room) => room.name);
  sessionStorage.setItem(ROOMS_KEY, JSON.stringify(joined));
}

async function joinRoom(name, { select = false } = {}) {
  if (!app.conn) return;
  const fresh = !app.rooms.has(name);
  const room = roomState(name);
  try {
    // The newest stream position seen names exactly what we have (README, "Room streams and
    // positions"); a room seen before positions existed catches up from its newest id.
    let since = room.pos || room.newest;
    for (;;) {
      const ack = await app.conn.request("join", since ? { room: name, since } : { room: name });
      room.joined = true;
      room.online = ack.online;
      room.unread = ack.unread;
      const view = app.views.get(name);
      if (ack.reset) {
        // The position cannot be answered from (a new database, too old): replace, not merge.
        room.clear();
        room.pos = null;
        view?.clear();
      }
      const missed = ack.messages || [];
      for (const message of missed) room.put(message);
      const changed = [...missed];
      for (const event of ack.events || []) {
        const updated = event.event === "message_deleted" ? room.markDeleted(event.id) : event;
        room.seePos(event.pos);
        if (event.event === "message_edited") room.put(event);
        if (updated) changed.push(updated);
      }
      room.seePos(ack.pos);
      view?.show(changed);
      if (!ack.has_more || changed.length === 0) break;
      since = typeof ack.pos === "string" ? ack.pos : missed[missed.length - 1].id;
    }
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError(`join ${name}`, error);
    if (fresh) dropRoom(name);
    return;
  }
  saveRooms();
  sidebar.update(room, app.active === name);
  if (select || app.active === null) selectRoom(name);
  if (!room.historyLoaded) await loadOlder(room);
}

async function loadOlder(room) {
  if (room.loadingOlder || !room.hasOlder || !app.conn) return;
  const view = app.views.get(room.name);
  const first = !room.historyLoaded;
  room.loadingOlder = true;
  view.updateOlder();
  try {
    const payload = { room: room.name, limit: HISTORY_PAGE };
    if (!first) payload.before = room.olderCursor;
    const ack = await app.conn.request("history", payload);
    for (const message of ack.messages) room.put(message);
    room.olderCursor = ack.next_before || null;
    room.historyLoaded = true;
    view.show(ack.messages, { older: !first });
    if (first) view.scrollToBottom();
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError(`history ${room.name}`, error);
  } finally {
    room.loadingOlder = false;
    view.updateOlder();
  }
  scheduleRead(room);
}

/** Replace what a room shows with its newest history page. */
function reloadHistory(room) {
  room.clear();
  app.views.get(room.name).clear();
  loadOlder(room);
}

function selectRoom(name) {
  if (!app.rooms.has(name)) return;
  // A listed conversation is joined when opened: presence, receipts and its history.
  if (!app.rooms.get(name).joined && app.conn) {
    joinRoom(name, { select: true });
    return;
  }
  if (app.active !== name) typing.stop();
  if (app.active !== name) $("room-activity").textContent = ""; // "Bob joined" was another room's
  app.active = name;
  for (const [other, view] of app.views) if (other !== name) view.hide();
  app.views.get(name).reveal();
  for (const room of app.rooms.values()) sidebar.update(room, room.name === name);
  renderHeader();
  scheduleRead(app.rooms.get(name));
  $("text").focus();
}

function renderHeader() {
  const room = app.active ? app.rooms.get(app.active) : null;
  $("room-title").textContent = room ? room.title : "Join a room to start";
  $("room-online").textContent = room ? `${room.online} online` : "";
  $("leave").hidden = !room || room.kind === "direct"; // a DM stays listed: there is no leaving it
  members.setRoom(room);
  $("text").disabled = !room;
  $("send").disabled = !room;
  if (!room) $("room-activity").textContent = "";
  renderTyping();
}

function renderTyping() {
  const room = app.active ? app.rooms.get(app.active) : null;
  $("typing").textContent = room ? typingText(room) : "";
}
setInterval(renderTyping, 1000);

$("leave").addEventListener("click", async () => {
  const name = app.active;
  if (!name || !app.conn) return;
  if (app.rooms.get(name).kind === "private") {
    // Leaving a private room is removing oneself (the last owner cannot: last_owner).
    await removeMember(app.rooms.get(name), app.me.sub);
    return;
  }
  try {
    await app.conn.request("leave", { room: name });
  } catch (error) {
    // not_in_room: the server already forgot it; drop it here too.
    if (!(error instanceof AckError)) throw error;
    if (error.code !== "not_in_room") return ackError(`leave ${name}`, error);
  }
  dropRoom(name);
  // Leave ends the presence; removing itself also takes the room off my_rooms' list.
  app.conn?.request("remove_member", { room: name, user: app.me.sub }).catch((error) => reportAck("leave", error));
});

// ---- read receipts and unread counts ----------------------------------------------------

const readTimers = new Map();

/** Once the newest message of the room on screen is visible, tell the server (debounced). */
function scheduleRead(room) {
  if (!room || readTimers.has(room.name)) return;
  readTimers.set(
    room.name,
    setTimeout(() => {
      readTimers.delete(room.name);
      sendRead(room);
    }, READ_DELAY_MS),
  );
}

function sendRead(room) {
  const view = app.views.get(room.name);
  if (!app.conn || !view || app.active !== room.name || document.visibilityState !== "visible") return;
  if (!view.atBottom()) return;
  const newest = room.newest;
  if (!newest || (room.lastReadSent && newest <= room.lastReadSent)) return;
  room.lastReadSent = newest;
  room.unread = 0;
  sidebar.update(room, true);
  app.conn.request("read", { room: room.name, message_id: newest }).catch((error) => {
    if (error instanceof AckError && error.code !== "not_in_room") ackError("read", error);
  });
}

document.addEventListener("visibilitychange", () => {
  if (app.active) scheduleRead(app.rooms.get(app.active));
});

// ---- live events ----------------------------------------------------------------------

function onMessage(message) {
  // Private and direct rooms deliver without join: a conversation may start here.
  const room = app.rooms.get(message.room) || conversations.arrived(message);
  if (!room) return;
  const isNew = room.put(message);
  app.views.get(room.name).show([message]);
  room.typing.delete(message.user.id);
  if (isNew && message.user.id !== app.me.sub) {
    const view = app.views.get(room.name);
    const seen = app.active === room.name && view.atBottom() && document.visibilityState === "visible";
    if (!seen) {
      room.unread += 1;
      if (room.kind !== "public") conversations.notice(room, message);
    }
  }
  if (isNew) sidebar.update(room, app.active === room.name);
  renderTyping();
  scheduleRead(room);
}

function onEdited(message) {
  const room = app.rooms.get(message.room);
  if (!room) return;
  room.put(message);
  room.seePos(message.pos);
  app.views.get(room.name).show([message]);
  sidebar.update(room, app.active === room.name); // the preview may be that message
}

function onDeleted(event) {
  const room = app.rooms.get(event.room);
  room?.seePos(event.pos);
  const deleted = room?.markDeleted(event.id);
  if (deleted) app.views.get(room.name).show([deleted]);
  if (deleted) sidebar.update(room, app.active === room.name); // the preview may have been it
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
    if (room.name === app.active) renderTyping();
    return;
  }
  if (event.user.id === app.me.sub) return;
  if (event.typing) room.typing.set(event.user.id, { name: event.user.name || event.user.id, until: Date.now() + SHOW_MS });
  else room.typing.delete(event.user.id);
  if (room.name === app.active) renderTyping();
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
  room.reads.set(event.user.id, { name: event.user.name || event.user.id, message_id: event.message_id });
  app.views.get(room.name).renderReceipts();
}

function onPresence(event) {
  const room = app.rooms.get(event.room);
  if (!room) return;
  room.online = event.online;
  if (event.action === "leave") room.typing.delete(event.user.id);
  sidebar.update(room, app.active === room.name);
  if (room.name === app.active && !event.user) renderHeader(); // a big room's count: nobody named
  else if (room.name === app.active) {
    renderHeader();
    const who = event.user.name || event.user.id;
    $("room-activity").textContent = event.action === "join" ? `${who} joined` : `${who} left`;
  }
}

function onKicked(event) {
  const title = conversations.titleOf(event.room);
  banner(`Removed from ${title}: ${event.reason}`);
  dropRoom(event.room);
}

// ---- editing and deleting own messages ---------------------------------------------------

async function editMessage(room, id, text) {
  try {
    const ack = await app.conn.request("edit", { room: room.name, id, text });
    room.put(ack.message);
    app.views.get(room.name).show([ack.message]);
    return true;
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError("edit", error);
    return false;
  }
}

async function deleteMessage(room, id) {
  try {
    await app.conn.request("delete", { room: room.name, id });
    const deleted = room.markDeleted(id);
    if (deleted) app.views.get(room.name).show([deleted]);
    sidebar.update(room, app.active === room.name);
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError("delete", error);
  }
}

// ---- sending --------------------------------------------------------------------------

/** A client_msg_id: random, so a retry of the same send is recognised by the server. */
function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function send(room, text) {
  const view = app.views.get(room.name);
  const clientMsgId = newClientId();
  const li = view.addPending(clientMsgId, text);
  const attempt = async () => {
    li.classList.remove("failed");
    li.querySelector(".actions")?.remove();
    li.querySelector(".state").textContent = "sending…";
    try {
      const ack = await app.conn.request("message", { room: room.name, text, client_msg_id: clientMsgId });
      li.remove();
      room.put(ack.message);
      view.show([ack.message]);
      view.scrollToBottom();
      scheduleRead(room);
    } catch (error) {
      if (!(error instanceof AckError)) throw error;
      view.failPending(li, error, attempt, () => li.remove());
    }
  };
  await attempt();
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = app.active ? app.rooms.get(app.active) : null;
  const text = $("text").value;
  if (!room || !app.conn || !text.trim()) return;
  $("text").value = "";
  typing.stop();
  send(room, text);
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

$("text").addEventListener("input", () => {
  if (app.active && $("text").value) typing.input(app.active);
});

// ---- start ----------------------------------------------------------------------------

tokens
  .appConfig()
  .then((config) => {
    app.devSignIn = Boolean(config.dev_sign_in);
    $("dev-form").hidden = !app.devSignIn;
  })
  .catch(() => toast("could not read /app/config.json"));

const saved = tokens.saved();
if (saved) signIn(saved);
