// Read receipts and unread counts: once the newest message of the room on screen is
// visible, tell the server (debounced); that also clears the room's unread and mention badges.
import { AckError } from "./connection.js";
import { app } from "./state.js";
import { ackError } from "./status.js";

const READ_DELAY_MS = 300;
const timers = new Map();

export function scheduleRead(room) {
  if (!room || timers.has(room.name)) return;
  timers.set(
    room.name,
    setTimeout(() => {
      timers.delete(room.name);
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
  room.mentions = 0; // unread mentions count up to the read marker (README, Replies and threads)
  app.sidebar.update(room, true);
  app.conn.request("read", { room: room.name, message_id: newest }).catch((error) => {
    if (error instanceof AckError && error.code !== "not_in_room") ackError("read", error);
  });
}

document.addEventListener("visibilitychange", () => {
  if (app.active) scheduleRead(app.rooms.get(app.active));
});
