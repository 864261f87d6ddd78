// Whom the signed-in user blocks (README, "Blocking"). The server stops delivering their
// messages; this set hides the ones already on screen, offers Block / Unblock and lists
// whom the user blocks (with Unblock: their messages are hidden, so their names are too).
import { $, h } from "./dom.js";

export class Blocks {
  /** request(event, payload) -> ack; changed(unblocked) re-renders what depends on the set. */
  constructor(request, changed) {
    this.request = request;
    this.changed = changed;
    this.users = new Set();
  }

  has(user) {
    return this.users.has(user);
  }

  async load() {
    const ack = await this.request("blocked", {});
    this.users = new Set(ack.users);
    this.changed(false);
  }

  async block(user) {
    await this.request("block", { user });
    this.users.add(user);
    this.changed(false);
  }

  async unblock(user) {
    await this.request("unblock", { user });
    this.users.delete(user);
    this.changed(true);
  }

  clear() {
    this.users.clear();
    this.render();
  }

  /** The "Blocked users" list, each with its Unblock button. */
  render(unblock) {
    const users = [...this.users].sort();
    $("blocked-none").hidden = users.length > 0;
    $("blocked-list").replaceChildren(
      ...users.map((user) =>
        h(
          "li",
          { dataset: { user } },
          h("span", { text: user }),
          h("button", { type: "button", text: "Unblock", "aria-label": `Unblock ${user}`, onclick: () => unblock(user) }),
        ),
      ),
    );
  }
}
