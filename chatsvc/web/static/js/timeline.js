// The messages of one room: a scroll container per room (each keeps its own position),
// messages in id order (each rendered by message.js), own messages editable, read receipts under the message each
// reader has reached, and messages still being sent below the rest.
import { h } from "./dom.js";
import { editInPlace } from "./edit.js";
import { messageElement, replaceKeepingFocus } from "./message.js";
import { markFailed, pendingElement } from "./pending.js";

const NEAR_PX = 48;

export class Timeline {
  /**
   * actions: the message actions of actions.js (reply, thread, react, pin, edit, remove,
   * block...) and older(room), atBottom(room).
   */
  constructor(room, me, actions) {
    this.room = room;
    this.me = me;
    this.actions = actions;
    this.items = new Map(); // message id -> <li>
    this.savedAtBottom = true;
    this.savedTop = 0;
    this.older = h("button", { type: "button", class: "older", onclick: () => actions.older(room) });
    this.list = h("ol", { class: "messages" });
    this.pending = h("ol", { class: "messages pending", "aria-label": "Sending" });
    this.element = h(
      "div",
      { class: "timeline", tabindex: "0", role: "log", "aria-label": `Messages in ${room.name}`, hidden: true },
      this.older,
      this.list,
      this.pending,
    );
    this.element.addEventListener("scroll", () => {
      if (this.element.scrollTop < NEAR_PX) actions.older(room);
      if (this.atBottom()) actions.atBottom(room);
    });
    this.updateOlder();
  }

  atBottom() {
    const el = this.element;
    if (el.hidden) return this.savedAtBottom;
    return el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_PX;
  }

  /** A hidden element loses its scroll position: remember it across room switches. */
  hide() {
    if (this.element.hidden) return;
    this.savedAtBottom = this.atBottom();
    this.savedTop = this.element.scrollTop;
    this.element.hidden = true;
  }

  reveal() {
    if (!this.element.hidden) return;
    this.element.hidden = false;
    if (this.savedAtBottom) this.scrollToBottom();
    else this.element.scrollTop = this.savedTop;
  }

  scrollToBottom() {
    if (this.element.hidden) this.savedAtBottom = true;
    else this.element.scrollTop = this.element.scrollHeight;
  }

  /** Scroll a message into view and focus it (the pins list); false if it is not loaded. */
  focusMessage(id) {
    const li = this.items.get(id);
    if (!li || li.hidden) return false;
    li.tabIndex = -1;
    li.scrollIntoView({ block: "center" });
    li.focus();
    return true;
  }

  updateOlder() {
    const more = this.room.hasOlder;
    this.older.disabled = !more || this.room.loadingOlder;
    this.older.textContent = this.room.loadingOlder
      ? "Loading…"
      : more
        ? "Load older messages"
        : "Start of the room's history";
  }

  /** Show new or changed messages; older pages keep what the reader was looking at. */
  show(messages, { older = false } = {}) {
    const fromBottom = this.element.scrollHeight - this.element.scrollTop;
    const stick = !older && this.atBottom();
    for (const message of [...messages].sort((a, b) => (a.id < b.id ? -1 : 1))) this.place(message);
    this.renderReceipts();
    if (this.element.hidden) return; // reveal() puts it where the reader left it
    if (older) this.element.scrollTop = this.element.scrollHeight - fromBottom;
    else if (stick) this.scrollToBottom();
  }

  place(message) {
    const li = this.render(message);
    const old = this.items.get(message.id);
    if (old) {
      replaceKeepingFocus(old, li);
    } else {
      let next = null;
      for (const id of this.items.keys()) if (id > message.id && (next === null || id < next)) next = id;
      this.list.insertBefore(li, next === null ? null : this.items.get(next));
    }
    this.items.set(message.id, li);
  }

  render(message) {
    return messageElement(message, {
      room: this.room,
      me: this.me,
      actions: this.actions,
      inThread: false,
      startEdit: (m) => this.startEdit(m),
    });
  }

  /** Render every message again (e.g. after a block or unblock). */
  rerender() {
    for (const message of this.room.messages.values()) this.place(message);
    this.renderReceipts();
  }

  /** Drop every message shown (a `reset` join answer replaces them). */
  clear() {
    for (const li of this.items.values()) li.remove();
    this.items.clear();
    this.updateOlder();
  }

  startEdit(message) {
    const li = this.items.get(message.id);
    if (!li) return;
    editInPlace(li, message, {
      save: (text) => this.actions.edit(this.room, message.id, text),
      cancel: () => this.place(this.room.messages.get(message.id) || message),
    });
  }

  /** "Read by Bob, Carol" under the newest message each other reader has read. */
  renderReceipts() {
    for (const [id, li] of this.items) {
      const names = this.room.readersOf(id);
      li.querySelector(".receipts").textContent = names.length ? `Read by ${names.join(", ")}` : "";
    }
  }

  /** A message on its way: "sending…", then failed (with retry) or replaced by the real one. */
  addPending(clientMsgId, text, sentiment) {
    const li = pendingElement(this.me, clientMsgId, text, sentiment);
    this.pending.append(li);
    this.scrollToBottom();
    return li;
  }

  failPending(li, error, retry, discard) {
    markFailed(li, error, retry, discard);
  }
}
