// The members panel of a private room: who is in it with which role, invite, remove.
// Roles and permissions are the server's (README, "Conversations"); the panel only offers
// what the viewer's role allows and shows the server's answer when it says no.
import { $, h } from "./dom.js";

const MANAGERS = new Set(["owner", "moderator"]);

export class MembersPanel {
  /** me() -> the signed-in {sub}; actions: {list(room) -> [{user, role}], add(room, user), remove(room, user)} */
  constructor(me, actions) {
    this.me = me;
    this.actions = actions;
    this.room = null;
    $("members-toggle").addEventListener("click", () => (this.open ? this.close() : this.show(this.room)));
    $("add-member-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const user = $("add-member").value.trim();
      if (!user || !this.room) return;
      if (await actions.add(this.room, user)) $("add-member").value = "";
    });
  }

  get open() {
    return !$("members-panel").hidden;
  }

  /** The header's Members button: for private rooms only. */
  setRoom(room) {
    if (this.room !== room) this.close();
    this.room = room;
    $("members-toggle").hidden = !room || room.kind !== "private";
  }

  async show(room) {
    if (!room) return;
    this.room = room;
    $("members-panel").hidden = false;
    $("members-toggle").setAttribute("aria-expanded", "true");
    await this.refresh(room);
  }

  close() {
    $("members-panel").hidden = true;
    $("members-toggle").setAttribute("aria-expanded", "false");
  }

  /** Reload the list if it is showing `room` (after member_added, role_changed...). */
  async refresh(room) {
    if (!this.open || !room || room !== this.room) return;
    const members = await this.actions.list(room);
    if (members === null || room !== this.room) return;
    const manager = MANAGERS.has(room.role);
    $("add-member-form").hidden = !manager;
    $("member-list").replaceChildren(
      ...members.map((m) => {
        const self = m.user === this.me().sub;
        // Owners and moderators remove members; only an owner removes an owner or moderator.
        const may = !self && manager && (room.role === "owner" || !MANAGERS.has(m.role));
        return h(
          "li",
          { dataset: { user: m.user } },
          h("span", { class: "member", text: self ? `${m.user} (you)` : m.user }),
          h("span", { class: "role", text: m.role }),
          may
            ? h("button", {
                type: "button",
                text: "Remove",
                "aria-label": `Remove ${m.user}`,
                onclick: () => this.actions.remove(room, m.user),
              })
            : null,
        );
      }),
    );
  }
}
