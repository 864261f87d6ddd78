// The joined rooms (with unread badges and online counts) and the join form.
import { $, h } from "./dom.js";

const KIND_LABEL = { public: "#", private: "◆", direct: "@" };
const KIND_NAME = { public: "room", private: "private room", direct: "direct message" };

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

  /** Add or refresh a room's entry; the list stays newest activity first. */
  update(room, active) {
    let item = this.items.get(room.name);
    if (!item) {
      const button = h("button", { type: "button", class: "room-button", onclick: () => this.actions.select(room.name) });
      item = h("li", { dataset: { room: room.name } }, button);
      this.items.set(room.name, item);
    }
    item.dataset.activity = room.activity;
    item.dataset.kind = room.kind;
    const button = item.firstChild;
    const kind = KIND_LABEL[room.kind];
    const parts = [h("span", { class: `kind kind-${room.kind}`, text: kind, title: KIND_NAME[room.kind], "aria-hidden": "true" }), h("span", { class: "room-name", text: room.title })];
    if (room.mentions > 0) {
      parts.push(h("span", { class: "badge mention-badge", text: `@${room.mentions}`, title: `${room.mentions} unread mentions of you` }));
    }
    if (room.unread > 0) parts.push(h("span", { class: "badge", text: String(room.unread) }));
    const details = [];
    if (room.role && room.kind === "private") details.push(room.role);
    if (room.kind === "private" && room.members) details.push(`${room.members} members`);
    if (room.online) details.push(`${room.online} online`);
    parts.push(h("span", { class: "count", text: details.join(" · "), hidden: details.length === 0 }));
    const last = room.lastMessage;
    const preview = last ? `${last.user.name || last.user.id}: ${last.text}` : "";
    parts.push(h("span", { class: "preview", text: preview, hidden: !preview }));
    button.replaceChildren(...parts);
    button.setAttribute("aria-current", active ? "true" : "false");
    button.setAttribute(
      "aria-label",
      `${KIND_NAME[room.kind]} ${room.title}${room.unread ? `, ${room.unread} unread` : ""}${room.mentions ? `, ${room.mentions} mentions of you` : ""}${room.online ? `, ${room.online} online` : ""}`,
    );
    this.place(item);
  }

  /** Put the entry where its activity sorts (newest first); ids are time-sortable. */
  place(item) {
    const list = $("room-list");
    let before = null;
    for (const other of list.children) {
      if (other !== item && (other.dataset.activity || "") < (item.dataset.activity || "")) {
        before = other;
        break;
      }
    }
    if (before === null && item.parentNode === list && item === list.lastElementChild) return;
    if (item.nextElementSibling === before && item.parentNode === list) return;
    list.insertBefore(item, before);
  }

  remove(name) {
    this.items.get(name)?.remove();
    this.items.delete(name);
  }

  clear() {
    for (const name of [...this.items.keys()]) this.remove(name);
  }
}
