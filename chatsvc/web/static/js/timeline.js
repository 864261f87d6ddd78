// The messages of one room: a scroll container per room (each keeps its own position),
// messages in id order, own messages editable, read receipts under the message each
// reader has reached, and messages still being sent below the rest.
import { clock, h } from "./dom.js";

const NEAR_PX = 48;

export class Timeline {
  /**
   * actions: {edit(room, id, text), remove(room, id), older(room), atBottom(room),
   * isBlocked(user id), block(user), unblock(user)}
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
      old.replaceWith(li);
    } else {
      let next = null;
      for (const id of this.items.keys()) if (id > message.id && (next === null || id < next)) next = id;
      this.list.insertBefore(li, next === null ? null : this.items.get(next));
    }
    this.items.set(message.id, li);
  }

  render(message) {
    const mine = message.user.id === this.me.sub;
    const deleted = Boolean(message.deleted);
    // A blocked author's messages stay out of sight (the server stops sending new ones).
    const blocked = !mine && this.actions.isBlocked(message.user.id);
    const classes = ["msg", mine && "mine", deleted && "deleted", blocked && "blocked", message.kind && `kind-${message.kind}`];
    return h(
      "li",
      { class: classes.filter(Boolean).join(" "), dataset: { id: message.id, user: message.user.id }, hidden: blocked },
      h(
        "div",
        { class: "meta" },
        mine ? h("span", { class: "author", text: message.user.name || message.user.id }) : this.authorMenu(message.user),
        h("time", { datetime: message.created_at, title: message.created_at, text: clock(message.created_at) }),
        message.edited_at && !deleted ? h("span", { class: "edited", text: "edited" }) : null,
      ),
      h("p", { class: "text", text: deleted ? "message deleted" : message.text }),
      mine && !deleted
        ? h(
            "div",
            { class: "actions" },
            h("button", { type: "button", text: "Edit", onclick: () => this.startEdit(message) }),
            h("button", {
              type: "button",
              text: "Delete",
              onclick: () => this.actions.remove(this.room, message.id),
            }),
          )
        : null,
      h("p", { class: "receipts" }),
    );
  }

  /** Someone else's name: a button opening that author's menu (block / unblock). */
  authorMenu(user) {
    const name = user.name || user.id;
    const menu = h("span", { class: "author-menu", hidden: true });
    const button = h("button", {
      type: "button",
      class: "author author-button",
      text: name,
      "aria-haspopup": "true",
      "aria-expanded": "false",
      title: `${name} (${user.id})`,
      onclick: () => {
        const open = menu.hidden;
        const blocked = this.actions.isBlocked(user.id);
        menu.replaceChildren(
          h("button", {
            type: "button",
            text: blocked ? `Unblock ${name}` : `Block ${name}`,
            onclick: () => (blocked ? this.actions.unblock(user.id) : this.actions.block(user.id)),
          }),
          h("button", { type: "button", text: `Message ${name}`, onclick: () => this.actions.dm(user.id) }),
        );
        menu.hidden = !open;
        button.setAttribute("aria-expanded", String(open));
        if (open) menu.firstChild.focus();
      },
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        menu.hidden = true;
        button.setAttribute("aria-expanded", "false");
        button.focus();
      }
    });
    return h("span", { class: "author-wrap" }, button, menu);
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
    const input = h("input", { class: "edit-input", value: message.text, "aria-label": "Edit message" });
    const cancel = () => this.place(this.room.messages.get(message.id) || message);
    const save = async () => {
      const text = input.value;
      if (!text.trim() || text === message.text) return cancel();
      input.disabled = true;
      if (!(await this.actions.edit(this.room, message.id, text))) input.disabled = false;
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        save();
      } else if (event.key === "Escape") {
        cancel();
      }
    });
    const form = h(
      "div",
      { class: "edit" },
      input,
      h("button", { type: "button", text: "Save", onclick: save }),
      h("button", { type: "button", text: "Cancel", onclick: cancel }),
    );
    li.querySelector(".text").replaceWith(form);
    li.querySelector(".actions")?.remove();
    input.focus();
  }

  /** "Read by Bob, Carol" under the newest message each other reader has read. */
  renderReceipts() {
    for (const [id, li] of this.items) {
      const names = this.room.readersOf(id);
      li.querySelector(".receipts").textContent = names.length ? `Read by ${names.join(", ")}` : "";
    }
  }

  /** A message on its way: "sending…", then failed (with retry) or replaced by the real one. */
  addPending(clientMsgId, text) {
    const li = h(
      "li",
      { class: "msg mine pending", dataset: { client: clientMsgId } },
      h("div", { class: "meta" }, h("span", { class: "author", text: this.me.name }), h("span", { class: "state", text: "sending…" })),
      h("p", { class: "text", text }),
    );
    this.pending.append(li);
    this.scrollToBottom();
    return li;
  }

  failPending(li, error, retry, discard) {
    li.classList.add("failed");
    li.querySelector(".state").textContent = `not sent: ${error.code} — ${error.detail || error.message}`;
    li.append(
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", text: "Retry", onclick: retry }),
        h("button", { type: "button", text: "Discard", onclick: discard }),
      ),
    );
  }
}
