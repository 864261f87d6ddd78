// The joined rooms (with unread badges and online counts) and the join form.
import { $, h } from "./dom.js";

export const SUGGESTED = ["stock:005930", "stock:AAPL", "stock:TSLA", "stock:NVDA", "stock:035720"];

export class Sidebar {
  /** actions: {join(name), select(name)} */
  constructor(actions) {
    this.actions = actions;
    this.items = new Map();
    const list = $("room-suggestions");
    const buttons = $("suggestions");
    for (const name of SUGGESTED) {
      list.append(h("option", { value: name }));
      buttons.append(h("button", { type: "button", class: "chip", text: name, onclick: () => actions.join(name) }));
    }
    $("join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("join-room").value.trim();
      if (name) actions.join(name);
      $("join-room").value = "";
    });
  }

  /** Add or refresh a room's entry. */
  update(room, active) {
    let item = this.items.get(room.name);
    if (!item) {
      const button = h("button", { type: "button", class: "room-button", onclick: () => this.actions.select(room.name) });
      item = h("li", {}, button);
      this.items.set(room.name, item);
      $("room-list").append(item);
    }
    const button = item.firstChild;
    const parts = [h("span", { class: "room-name", text: room.name })];
    if (room.unread > 0) parts.push(h("span", { class: "badge", text: String(room.unread) }));
    parts.push(h("span", { class: "count", text: room.online ? `${room.online} online` : "" }));
    button.replaceChildren(...parts);
    button.setAttribute("aria-current", active ? "true" : "false");
    button.setAttribute(
      "aria-label",
      `${room.name}${room.unread ? `, ${room.unread} unread` : ""}${room.online ? `, ${room.online} online` : ""}`,
    );
  }

  remove(name) {
    this.items.get(name)?.remove();
    this.items.delete(name);
  }

  clear() {
    for (const name of [...this.items.keys()]) this.remove(name);
  }
}
