// Pins (README, "Replies and threads"): which messages of a room are pinned (`pins {room}`
// on join, then `pinned` / `unpinned` events), the header's "Pins" button with their count,
// and the list of pinned messages: Show scrolls to one, Unpin for those allowed to pin.
import { mayPin } from "./actions.js";
import { $, clock, h } from "./dom.js";
import { app, request } from "./state.js";

const RELOAD_DELAY_MS = 200;

export class PinsPanel {
  constructor() {
    this.room = null;
    this.list = []; // the active room's pins answer: [{message, by, pinned_at_ms}]
    this.timers = new Map();
    $("pins-toggle").addEventListener("click", () => (this.open ? this.close() : this.show()));
    $("pins-panel").addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.close();
        $("pins-toggle").focus();
      }
    });
  }

  get open() {
    return !$("pins-panel").hidden;
  }

  /** The room the header shows. */
  setRoom(room) {
    if (this.room !== room) this.close();
    this.room = room;
    $("pins-toggle").hidden = !room;
    this.renderButton();
  }

  renderButton() {
    const n = this.room ? this.room.pinned.size : 0;
    $("pins-toggle").textContent = n ? `Pins (${n})` : "Pins";
    $("pins-toggle").dataset.count = String(n);
  }

  /** Ask which messages of `room` are pinned; re-render those that changed. */
  async load(room) {
    const ack = await request("pins", { room: room.name }, `pins ${room.name}`);
    if (!ack || !app.rooms.has(room.name)) return;
    const before = room.pinned;
    room.pinned = new Set(ack.pins.map((p) => p.message.id));
    const view = app.views.get(room.name);
    const changed = [...before, ...room.pinned].filter((id) => before.has(id) !== room.pinned.has(id));
    view?.show(changed.map((id) => room.messages.get(id)).filter(Boolean));
    if (room === this.room) {
      this.list = ack.pins;
      this.renderButton();
      if (this.open) this.render();
    }
  }

  /** After a pin or unpin: the count now, the list soon (one reload for a burst). */
  refresh(room) {
    if (room === this.room) this.renderButton();
    if (room !== this.room || !this.open || this.timers.has(room.name)) return;
    this.timers.set(
      room.name,
      setTimeout(() => {
        this.timers.delete(room.name);
        this.load(room);
      }, RELOAD_DELAY_MS),
    );
  }

  /** A message changed (edit, delete): the list shows it as it is now. */
  changed(room, message) {
    if (room === this.room && this.open && (room.pinned.has(message.id) || message.deleted)) this.refresh(room);
  }

  async show() {
    if (!this.room) return;
    $("pins-panel").hidden = false;
    $("pins-toggle").setAttribute("aria-expanded", "true");
    await this.load(this.room);
    $("pin-list").querySelector("button")?.focus();
  }

  close() {
    $("pins-panel").hidden = true;
    $("pins-toggle").setAttribute("aria-expanded", "false");
  }

  render() {
    const room = this.room;
    const allowed = mayPin(room);
    $("pins-none").hidden = this.list.length > 0;
    $("pin-list").replaceChildren(
      ...this.list.map(({ message }) =>
        h(
          "li",
          { dataset: { id: message.id } },
          h("span", { class: "author", text: message.user.name || message.user.id }),
          h("time", { datetime: message.created_at, text: clock(message.created_at) }),
          h("span", { class: "pin-text", text: message.text }),
          h("button", {
            type: "button",
            text: "Show",
            "aria-label": `Show the pinned message of ${message.user.name || message.user.id}`,
            onclick: () => this.reveal(message),
          }),
          allowed
            ? h("button", {
                type: "button",
                text: "Unpin",
                "aria-label": `Unpin the message of ${message.user.name || message.user.id}`,
                onclick: () => app.views.get(room.name) && this.unpin(room, message.id),
              })
            : null,
        ),
      ),
    );
  }

  async unpin(room, id) {
    if (!(await request("unpin", { room: room.name, id }))) return;
    room.pinned.delete(id);
    const message = room.messages.get(id);
    if (message) app.views.get(room.name)?.show([message]);
    this.renderButton();
    await this.load(room);
  }

  /** Scroll to a pinned message; one older than the loaded history opens as a thread. */
  reveal(message) {
    const view = app.views.get(this.room.name);
    if (view?.focusMessage(message.id)) return;
    app.thread.open(this.room, message.id);
  }
}
