// Replies and threads (README, "Replies and threads"). The reply bar above the composer
// says which message the next one answers (`message {..., reply_to}`); the thread panel
// shows a message and its replies (`thread {room, id, before?}`), follows new replies live
// (and their edits and deletes), offers Edit and Delete as the room's timeline does, and
// has its own composer that replies to the thread's message.
import { send } from "./compose.js";
import { $ } from "./dom.js";
import { editInPlace } from "./edit.js";
import { messageElement, replaceKeepingFocus } from "./message.js";
import { markFailed, pendingElement } from "./pending.js";
import { messageActions } from "./actions.js";
import { unquoted, withReaction } from "./room.js";
import { app, request } from "./state.js";

const THREAD_PAGE = 50;

export class ReplyBar {
  constructor() {
    this.room = null;
    this.message = null;
    $("reply-cancel").addEventListener("click", () => this.cancel());
  }

  get active() {
    return this.message !== null;
  }

  /** Reply to `message`: the bar quotes it and the composer gets the focus. */
  start(room, message) {
    this.room = room.name;
    this.message = message;
    const who = message.user.name || message.user.id;
    $("reply-author").textContent = who;
    $("reply-preview").textContent = message.text.slice(0, 120);
    $("reply-bar").hidden = false;
    $("text").focus();
  }

  /** The id the next message in `room` replies to, or null. */
  target(room) {
    return this.message && this.room === room.name ? this.message.id : null;
  }

  cancel({ focus = true } = {}) {
    const was = this.active;
    this.room = null;
    this.message = null;
    $("reply-bar").hidden = true;
    if (was && focus) $("text").focus();
  }
}

export class ThreadPanel {
  constructor() {
    this.room = null;
    this.parentId = null;
    this.items = new Map(); // id -> <li>
    this.messages = new Map(); // id -> message shown here
    this.before = null;
    this.opener = null;
    this.actions = messageActions();
    this.list = $("thread-messages");
    this.pending = $("thread-pending");
    $("thread-close").addEventListener("click", () => this.close());
    $("thread-older").addEventListener("click", () => this.loadOlder());
    $("thread-panel").addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.defaultPrevented) {
        event.preventDefault();
        this.close();
      }
    });
    $("thread-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("thread-text").value;
      const room = app.rooms.get(this.room);
      if (!room || !text.trim() || !app.conn) return;
      $("thread-text").value = "";
      send(room, text, { reply_to: this.parentId }, this);
    });
    $("thread-text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("thread-form").requestSubmit();
      }
    });
  }

  get isOpen() {
    return !$("thread-panel").hidden;
  }

  /** Open the thread of message `id` in `room`: the message, then its replies oldest first. */
  async open(room, id) {
    this.opener = document.activeElement;
    const ack = await request("thread", { room: room.name, id, limit: THREAD_PAGE });
    if (!ack) return;
    this.room = room.name;
    this.parentId = id;
    this.items.clear();
    this.messages.clear();
    this.list.replaceChildren();
    this.pending.replaceChildren();
    this.before = ack.next_before || null;
    this.place(ack.message);
    for (const reply of ack.replies) this.place(reply);
    const who = ack.message.user.name || ack.message.user.id;
    $("thread-title").textContent = `Thread · ${who}`;
    $("thread-older").hidden = !this.before;
    $("thread-panel").hidden = false;
    document.body.classList.add("thread-open");
    this.scrollToBottom();
    $("thread-text").focus();
  }

  async loadOlder() {
    const room = app.rooms.get(this.room);
    if (!room || !this.before) return;
    const ack = await request("thread", { room: room.name, id: this.parentId, before: this.before, limit: THREAD_PAGE });
    if (!ack || this.room !== room.name) return;
    for (const reply of ack.replies) this.place(reply);
    this.before = ack.next_before || null;
    $("thread-older").hidden = !this.before;
  }

  close() {
    if (!this.isOpen) return;
    $("thread-panel").hidden = true;
    document.body.classList.remove("thread-open");
    this.room = null;
    this.parentId = null;
    const back = this.opener;
    this.opener = null;
    if (back && back.isConnected) back.focus();
    else $("text").focus();
  }

  roomGone(name) {
    if (this.room === name) this.close();
  }

  /** A new message of a room: shown here if it replies to the open thread. */
  arrived(message) {
    if (!this.isOpen || message.room !== this.room || message.reply_to?.id !== this.parentId) return;
    const stick = this.atBottom();
    this.place(message);
    if (stick) this.scrollToBottom();
  }

  /** A message changed (edit, delete, reactions, reply count): re-rendered if shown here. */
  changed(message) {
    if (this.isOpen && message.room === this.room && this.items.has(message.id)) this.place(message);
  }

  /** A deleted message of `roomName` that the room's timeline does not have (a reply older
   * than its loaded history): the room's copy, when there is one, comes through changed(). */
  deleted(roomName, id) {
    if (!this.isOpen || roomName !== this.room) return;
    const room = app.rooms.get(roomName);
    const message = this.messages.get(id);
    if (message && !message.deleted && !room?.messages.has(id)) {
      const { reactions, own_reactions, ...rest } = message; // as Room.markDeleted shows it
      this.place({ ...rest, text: "", deleted: true });
    }
    // Replies quoting it that the room does not have: their quotes blanked as the room's are.
    for (const reply of this.messages.values()) {
      if (reply.reply_to?.id === id && !reply.reply_to.deleted && !room?.messages.has(reply.id)) {
        this.place({ ...reply, reply_to: unquoted(reply.reply_to) });
      }
    }
  }

  /** Edit a message in the panel; the ack re-renders it here and in the timeline. */
  startEdit(message) {
    const li = this.items.get(message.id);
    const room = app.rooms.get(this.room);
    if (!li || !room) return;
    editInPlace(li, message, {
      save: (text) => this.actions.edit(room, message.id, text),
      cancel: () => this.place(this.messages.get(message.id) || message),
    });
  }

  /** A reaction on a reply only this panel shows (older than the room's loaded history). */
  reacted(room, id, emoji, count, own) {
    const message = this.messages.get(id);
    if (!this.isOpen || room.name !== this.room || !message || room.messages.has(id)) return;
    const updated = withReaction(message, emoji, count, own);
    if (updated) this.place(updated);
  }

  /** Keep a message in id order; the thread's own message first (ids sort by time). */
  place(message) {
    const room = app.rooms.get(this.room) || { name: this.room, pinned: new Set(), kind: "public" };
    // The room's copy is newer (live reactions, edits) when the timeline has it.
    const known = app.rooms.get(this.room)?.messages.get(message.id);
    let shown = known && !message.deleted ? { ...message, ...known } : message;
    const before = this.messages.get(message.id);
    if (before && !shown.deleted && !known) {
      // An edit carries no reactions or reply counts: keep the ones this panel showed.
      const kept = {};
      for (const key of ["reactions", "own_reactions", "reply_count"]) if (!(key in shown) && key in before) kept[key] = before[key];
      shown = { ...shown, ...kept };
    }
    this.messages.set(shown.id, shown);
    const li = messageElement(shown, {
      room,
      me: app.me,
      actions: this.actions,
      inThread: true,
      startEdit: (m) => this.startEdit(m),
    });
    if (shown.id === this.parentId) li.classList.add("thread-parent");
    const old = this.items.get(shown.id);
    if (old) replaceKeepingFocus(old, li);
    else {
      let next = null;
      for (const id of this.items.keys()) if (id > shown.id && id !== this.parentId && (next === null || id < next)) next = id;
      this.list.insertBefore(li, next === null ? null : this.items.get(next));
    }
    this.items.set(shown.id, li);
  }

  atBottom() {
    const el = $("thread-scroll");
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  }

  scrollToBottom() {
    const el = $("thread-scroll");
    el.scrollTop = el.scrollHeight;
  }

  // The composer's send() shows a pending reply here, like the timeline does.
  addPending(clientMsgId, text, sentiment) {
    const li = pendingElement(app.me, clientMsgId, text, sentiment);
    this.pending.append(li);
    this.scrollToBottom();
    return li;
  }

  failPending(li, error, retry, discard) {
    markFailed(li, error, retry, discard);
  }
}
