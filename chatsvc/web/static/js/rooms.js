// Joined rooms: joining (with catch-up from the newest position seen), history pages,
// switching rooms, leaving. Protocol: README.md, "Protocol" and "Room streams and positions".
import { AckError } from "./connection.js";
import { $ } from "./dom.js";
import { applyEvent } from "./live.js";
import { scheduleRead } from "./reads.js";
import { Room } from "./room.js";
import { app, reportAck } from "./state.js";
import { ackError } from "./status.js";
import { Timeline } from "./timeline.js";
import { messageActions } from "./actions.js";

const HISTORY_PAGE = 30;
const ROOMS_KEY = "chatsvc.rooms";

export function roomState(name) {
  let room = app.rooms.get(name);
  if (!room) {
    room = new Room(name);
    app.rooms.set(name, room);
    const view = new Timeline(room, app.me, {
      ...messageActions(),
      older: loadOlder,
      atBottom: scheduleRead,
    });
    app.views.set(name, view);
    $("timelines").append(view.element);
  }
  return room;
}

export function dropRoom(name) {
  app.rooms.delete(name);
  app.views.get(name)?.element.remove();
  app.views.delete(name);
  app.sidebar.remove(name);
  app.thread.roomGone(name);
  saveRooms();
  if (app.active === name) {
    app.active = null;
    const next = app.rooms.keys().next();
    if (!next.done) selectRoom(next.value);
    else app.header.render();
  }
}

export function saveRooms() {
  const joined = [...app.rooms.values()].filter((room) => room.joined).map((room) => room.name);
  sessionStorage.setItem(ROOMS_KEY, JSON.stringify(joined));
}

export const savedRooms = () => JSON.parse(sessionStorage.getItem(ROOMS_KEY) || "[]");
export const forgetRooms = () => sessionStorage.removeItem(ROOMS_KEY);

export async function joinRoom(name, { select = false } = {}) {
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
      room.info(ack); // slow mode and sentiment, when the server sends them (issue 25)
      const view = app.views.get(name);
      if (ack.reset) {
        // The position cannot be answered from (a new database, too old): replace, not merge.
        room.clear();
        room.pos = null;
        view?.clear();
      }
      const missed = ack.messages || [];
      for (const message of missed) room.put(message);
      view?.show(missed);
      // Edits, deletes, reply counts, reactions and pins after `since`, in stream order.
      for (const event of ack.events || []) applyEvent(event);
      room.seePos(ack.pos);
      if (!ack.has_more || missed.length + (ack.events || []).length === 0) break;
      since = typeof ack.pos === "string" ? ack.pos : missed[missed.length - 1].id;
    }
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError(`join ${name}`, error);
    if (fresh) dropRoom(name);
    return;
  }
  saveRooms();
  app.sidebar.update(room, app.active === name);
  room.detailsStale = true; // pins and room_info: asked when the room is on screen
  if (select || app.active === null) selectRoom(name);
  else if (app.active === name) loadDetails(room);
  if (!room.historyLoaded) await loadOlder(room);
}

/** Which messages are pinned (history does not say) and the room's info, for the room on
 * screen only: at sign-in every saved room is joined, and the rate limit (10 events at once,
 * 5 a second by default) is better spent on those joins and their history. */
function loadDetails(room) {
  if (!room.detailsStale || !room.joined) return;
  room.detailsStale = false;
  app.pins.load(room);
  app.header.loadInfo(room);
}

export async function loadOlder(room) {
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
export function reloadHistory(room) {
  room.clear();
  app.views.get(room.name).clear();
  loadOlder(room);
}

export function selectRoom(name) {
  if (!app.rooms.has(name)) return;
  // A listed conversation is joined when opened: presence, receipts and its history.
  if (!app.rooms.get(name).joined && app.conn) {
    joinRoom(name, { select: true });
    return;
  }
  if (app.active !== name) {
    app.typing.stop();
    app.reply.cancel();
    $("room-activity").textContent = ""; // "Bob joined" was another room's
  }
  app.active = name;
  for (const [other, view] of app.views) if (other !== name) view.hide();
  app.views.get(name).reveal();
  for (const room of app.rooms.values()) app.sidebar.update(room, room.name === name);
  app.header.render();
  loadDetails(app.rooms.get(name));
  scheduleRead(app.rooms.get(name));
  $("text").focus();
}

/** The header's Leave: a public room is left and unlisted, a private one left as a member. */
export async function leaveActive() {
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
}

/** Remove a member; removing oneself is leaving, and the room goes from the list. */
export async function removeMember(room, user) {
  const ok = await app.conversations.removeMember(room, user);
  if (ok && user === app.me.sub) dropRoom(room.name);
  return ok;
}
