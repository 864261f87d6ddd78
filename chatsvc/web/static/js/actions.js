// What a rendered message can do, for the room's timeline and the thread panel alike:
// reply, open its thread, react, pin, edit and delete, and the author menu (block, direct
// message).
import { AckError } from "./connection.js";
import { deleteMessage, editMessage, showChanged } from "./compose.js";
import { app, reportAck, request } from "./state.js";
import { ackError } from "./status.js";

const MANAGERS = new Set(["owner", "moderator"]);

/** Pinning is for a private or direct room's owners and moderators, and `admin` in public rooms. */
export function mayPin(room) {
  if (room.kind === "public") return Boolean(app.me?.roles?.includes("admin"));
  return MANAGERS.has(room.role);
}

/** Deleting: the author; `admin` anywhere; a private or direct room's owners and moderators
 * (README, "Conversations"). Only to offer the button: the server decides. */
export function mayDelete(room, message) {
  if (message.user?.id === app.me?.sub || app.me?.roles?.includes("admin")) return true;
  return room.kind !== "public" && MANAGERS.has(room.role);
}

/** React (or take one's reaction back); the ack's count shows at once, the event follows. */
async function react(room, id, emoji, add) {
  try {
    const ack = await app.conn.request(add ? "react" : "unreact", { room: room.name, id, emoji });
    const own = add ? "add" : "remove";
    showChanged(room, room.reacted(id, emoji, ack.count, own));
    app.thread.reacted(room, id, emoji, ack.count, own);
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError(add ? "react" : "unreact", error);
  }
}

async function pin(room, id, on) {
  const ack = await request(on ? "pin" : "unpin", { room: room.name, id });
  if (!ack) return;
  if (on) room.pinned.add(id);
  else room.pinned.delete(id);
  const message = room.messages.get(id);
  if (message) showChanged(room, message);
  app.pins.refresh(room);
}

export function messageActions() {
  return {
    isBlocked: (user) => app.blocks.has(user),
    block: (user) => app.blocks.block(user).catch((error) => reportAck("block", error)),
    unblock: (user) => app.blocks.unblock(user).catch((error) => reportAck("unblock", error)),
    dm: (user) => app.conversations.openDm(user),
    reply: (room, message) => app.reply.start(room, message),
    thread: (room, message) => app.thread.open(room, message.id),
    react: (room, id, emoji) => react(room, id, emoji, true),
    unreact: (room, id, emoji) => react(room, id, emoji, false),
    mayPin,
    pin: (room, id) => pin(room, id, true),
    unpin: (room, id) => pin(room, id, false),
    mayDelete,
    edit: editMessage,
    remove: deleteMessage,
    me: () => app.me,
  };
}
