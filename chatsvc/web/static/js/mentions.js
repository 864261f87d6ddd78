// Mentions (README, "Replies and threads"): typing `@` in the composer lists the room's
// members (private and direct rooms: `members`; public rooms: the people seen there) to
// pick from by keyboard or pointer; every `@user` in the text goes out as `message {...,
// mentions}` (the server keeps only members in private rooms). The list is an ARIA listbox the composer controls.
import { $, h } from "./dom.js";
import { app } from "./state.js";

const SHOWN = 8;
const MAX_MENTIONS = 10; // CHATSVC_MAX_MENTIONS' default: more is invalid_payload
const MEMBERS_TTL_MS = 30000;
const TOKEN = /(^|\s)@([^\s@]{0,64})$/;

export class MentionBox {
  constructor(input) {
    this.input = input;
    this.list = $("mention-list");
    this.options = []; // [{id, name}]
    this.selected = 0;
    this.members = new Map(); // room -> {at, ids}
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", "mention-list");
    input.setAttribute("aria-expanded", "false");
    input.addEventListener("input", () => this.update());
    // Closed when the focus has left for good (a quick Shift+Tab and back must not close
    // a list opened meanwhile).
    input.addEventListener("blur", () => setTimeout(() => document.activeElement !== input && this.close(), 150));
    input.addEventListener("keydown", (event) => this.key(event));
  }

  get isOpen() {
    return !this.list.hidden;
  }

  /** The `@word` being typed right before the caret, or null. */
  query() {
    const before = this.input.value.slice(0, this.input.selectionStart);
    const match = TOKEN.exec(before);
    return match ? match[2] : null;
  }

  async update() {
    const room = app.active ? app.rooms.get(app.active) : null;
    const query = this.query();
    if (!room || query === null) return this.close();
    const candidates = await this.candidates(room);
    if (this.query() !== query) return; // typed on meanwhile: that input's update shows it
    const q = query.toLowerCase();
    const matches = candidates.filter((c) => c.id.toLowerCase().startsWith(q) || c.name.toLowerCase().startsWith(q));
    if (!matches.length) return this.close();
    this.options = matches.slice(0, SHOWN);
    this.selected = 0;
    this.render();
  }

  /** Whom one may mention in `room`: members of a private or direct room, else people seen. */
  async candidates(room) {
    const me = app.me.sub;
    if (room.kind !== "public") {
      const cached = this.members.get(room.name);
      if (!cached || Date.now() - cached.at > MEMBERS_TTL_MS) {
        const list = await app.conversations.listMembers(room);
        if (list) this.members.set(room.name, { at: Date.now(), ids: list.map((m) => m.user) });
      }
      const ids = this.members.get(room.name)?.ids || [];
      return ids.filter((id) => id !== me).map((id) => ({ id, name: room.people.get(id) || id }));
    }
    return [...room.people]
      .filter(([id]) => id !== me)
      .map(([id, name]) => ({ id, name }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  render() {
    this.list.replaceChildren(
      ...this.options.map((option, i) =>
        h(
          "li",
          {
            id: `mention-option-${i}`,
            role: "option",
            "aria-selected": String(i === this.selected),
            dataset: { user: option.id },
            // mousedown, not click: the composer keeps the focus.
            onmousedown: (event) => {
              event.preventDefault();
              this.pick(i);
            },
          },
          h("span", { class: "mention-name", text: option.name }),
          option.name !== option.id ? h("span", { class: "mention-id", text: `@${option.id}` }) : null,
        ),
      ),
    );
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.input.setAttribute("aria-activedescendant", `mention-option-${this.selected}`);
  }

  close() {
    if (this.list.hidden) return;
    this.list.hidden = true;
    this.options = [];
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    if (!this.isOpen || event.isComposing) return;
    const n = this.options.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      this.selected = (this.selected + (event.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.render();
    } else if (event.key === "Enter" || event.key === "Tab") {
      this.pick(this.selected);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return;
    }
    event.preventDefault(); // the composer does not send, the reply bar stays
  }

  /** Put `@id ` in place of the `@word` being typed. */
  pick(i) {
    const option = this.options[i];
    if (!option) return;
    const caret = this.input.selectionStart;
    const before = this.input.value.slice(0, caret).replace(/@[^\s@]*$/, `@${option.id} `);
    this.input.value = before + this.input.value.slice(caret);
    this.input.setSelectionRange(before.length, before.length);
    this.close();
    this.input.focus();
  }

  /** The mentions of the message being sent: every `@user` of the text (picked from the
   * list or typed out: a user who never came to a public room can be mentioned too). */
  collect(input) {
    const ids = [];
    for (const match of input.value.matchAll(/(?:^|\s)@([^\s@]{1,128})/g)) {
      const id = match[1].replace(/[,.;:!?)]+$/, ""); // "@bob," names bob
      if (id && id !== app.me.sub && !ids.includes(id)) ids.push(id);
    }
    this.close();
    return ids.slice(0, MAX_MENTIONS);
  }
}
