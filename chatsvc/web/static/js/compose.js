// The composer (Enter sends, with a reply, mentions and a sentiment mark when chosen) and
// editing or deleting messages (own ones; others' for moderators). A send shows "sending…"
// until its ack, then the real message or the error.
import { AckError } from "./connection.js";
import { $ } from "./dom.js";
import { scheduleRead } from "./reads.js";
import { activeRoom, app } from "./state.js";
import { ackError } from "./status.js";

/** A client_msg_id: random, so a retry of the same send is recognised by the server. */
function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Post `text` in `room` (`extra`: reply_to, mentions, sentiment); `view` shows it pending: the room's
 * timeline, or the thread panel for a reply written there. */
export async function send(room, text, extra = {}, view = app.views.get(room.name)) {
  const clientMsgId = newClientId();
  const li = view.addPending(clientMsgId, text, extra.sentiment);
  const attempt = async () => {
    li.classList.remove("failed");
    li.querySelector(".actions")?.remove();
    li.querySelector(".state").textContent = "sending…";
    try {
      const payload = { room: room.name, text, client_msg_id: clientMsgId, ...extra };
      const ack = await app.conn.request("message", payload);
      li.remove();
      room.put(ack.message);
      app.views.get(room.name)?.show([ack.message]);
      app.thread.arrived(ack.message);
      view.scrollToBottom();
      scheduleRead(room);
    } catch (error) {
      if (!(error instanceof AckError)) throw error;
      // slow_mode (issue 25): the composer's hint counts retry_after_ms down.
      if (error.code === "slow_mode") app.header.slowRefused(room, error);
      view.failPending(li, error, attempt, () => li.remove());
    }
  };
  await attempt();
}

export async function editMessage(room, id, text) {
  try {
    const ack = await app.conn.request("edit", { room: room.name, id, text });
    showChanged(room, room.edited(ack.message));
    return true;
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError("edit", error);
    return false;
  }
}

export async function deleteMessage(room, id) {
  try {
    await app.conn.request("delete", { room: room.name, id });
    showDeleted(room, id);
  } catch (error) {
    if (!(error instanceof AckError)) throw error;
    ackError("delete", error);
  }
}

/** A message was deleted (own delete's ack, or `message_deleted`): shown deleted in the
 * timeline and the thread panel, its replies' quotes blanked; null if the room lacks it. */
export function showDeleted(room, id) {
  const deleted = room.markDeleted(id);
  room.pinned.delete(id); // a deleted message's pins and reactions go away
  if (deleted) showChanged(room, deleted);
  app.thread.deleted(room.name, id); // a reply only the thread panel has (older than the room's)
  for (const reply of room.unquote(id)) showChanged(room, reply);
  app.sidebar.update(room, app.active === room.name); // the preview may have been it
  return deleted;
}

/** Re-render a changed message wherever it shows: the room's timeline and the thread panel. */
export function showChanged(room, message) {
  if (!message) return;
  app.views.get(room.name)?.show([message]);
  app.thread.changed(message);
  app.pins.changed(room, message);
}

export function initComposer() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = activeRoom();
    const text = $("text").value;
    if (!room || !app.conn || !text.trim()) return;
    const extra = {};
    const replyTo = app.reply.target(room);
    if (replyTo) extra.reply_to = replyTo;
    const mentions = app.mentions.collect($("text"));
    if (mentions.length) extra.mentions = mentions;
    const sentiment = app.sentiment.take(); // cleared for the next post; a retry keeps it
    if (sentiment) extra.sentiment = sentiment;
    $("text").value = "";
    app.typing.stop();
    app.reply.cancel({ focus: false });
    send(room, text, extra);
  });

  $("text").addEventListener("keydown", (event) => {
    if (event.defaultPrevented) return; // the mention list took the key
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "Escape" && app.reply.active) {
      event.preventDefault();
      app.reply.cancel();
    }
  });

  $("text").addEventListener("input", () => {
    if (app.active && $("text").value) app.typing.input(app.active);
  });
}
