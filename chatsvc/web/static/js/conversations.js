// Conversations (README, "Conversations"): the list from my_rooms, direct messages, private
// rooms and their members. Private and direct rooms deliver to every socket of a member, joined
// or not, so a conversation can appear here with its first message.
import { AckError } from "./connection.js";
import { $ } from "./dom.js";
import { ackError, banner, toast } from "./status.js";

const MY_ROOMS_LIMIT = 100;
const MY_ROOMS_PAGES = 5; // the list shows up to 500 conversations
const RELOAD_DELAY_MS = 250; // a burst of events reloads the list once

/**
 * ctx: {app, sidebar, members, roomState(name), dropRoom(name), selectRoom(name),
 * joinRoom(name, {select})}: the client's rooms and views, owned by main.js.
 */
export class Conversations {
  constructor(ctx) {
    this.ctx = ctx;
    this.reloadTimer = null;
    this.titles = new Map(); // room -> title, kept after the room is dropped (kicked says which)
    $("dm-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const user = $("dm-user").value.trim();
      if (user) this.openDm(user).then((ok) => ok && ($("dm-user").value = ""));
    });
    $("create-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const title = $("create-title").value.trim();
      const members = $("create-members")
        .value.split(/[\s,]+/)
        .filter(Boolean);
      if (title) this.createRoom(title, members);
    });
  }

  get conn() {
    return this.ctx.app.conn;
  }

  /** Apply one my_rooms entry (or an ack of create_room / open_dm) to the room's state. */
  apply(entry) {
    const room = this.ctx.roomState(entry.room);
    room.kind = entry.kind;
    room.title = entry.title || entry.room;
    this.titles.set(room.name, room.title);
    room.role = entry.role ?? null;
    room.members = Array.isArray(entry.members) ? entry.members.length : (entry.members ?? null);
    if (typeof entry.unread === "number" && !room.joined) room.unread = entry.unread;
    if (typeof entry.unread_mentions === "number" && !room.joined) room.mentions = entry.unread_mentions;
    const last = entry.last_message;
    if (last && last.id >= room.activity) {
      room.activity = last.id;
      room.lastMessage = last;
    }
    this.ctx.sidebar.update(room, this.ctx.app.active === room.name);
    return room;
  }

  /** Load the list (newest activity first); conversations gone from it were left meanwhile. */
  async load() {
    const conn = this.conn;
    if (!conn) return;
    const listed = new Set();
    // Only a conversation known before the list was asked for can be missing from it
    // because it was left; one that arrived meanwhile is newer than the answer.
    const known = [...this.ctx.app.rooms.values()].filter((room) => room.kind !== "public");
    try {
      let before = null;
      for (let page = 0; page < MY_ROOMS_PAGES; page++) {
        const ack = await conn.request("my_rooms", before ? { before, limit: MY_ROOMS_LIMIT } : { limit: MY_ROOMS_LIMIT });
        for (const entry of ack.rooms) {
          this.apply(entry);
          listed.add(entry.room);
        }
        before = ack.next_before;
        if (!before) break;
      }
    } catch (error) {
      if (!(error instanceof AckError)) throw error;
      ackError("my_rooms", error);
      return;
    }
    for (const room of known) {
      if (!listed.has(room.name) && this.ctx.app.rooms.get(room.name) === room) this.ctx.dropRoom(room.name);
    }
  }

  titleOf(name) {
    return this.ctx.app.rooms.get(name)?.title || this.titles.get(name) || name;
  }

  /** Reload the list soon (titles and member counts of conversations that just changed). */
  reloadSoon() {
    if (this.reloadTimer !== null) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.load();
    }, RELOAD_DELAY_MS);
  }

  /** A message in a private or direct room this client does not know yet. */
  arrived(message) {
    if (!/^(priv|dm):/.test(message.room)) return null;
    const room = this.ctx.roomState(message.room);
    // Until the list says (a DM's title is the other user), the sender names a DM.
    if (room.kind === "direct" && message.user.id !== this.ctx.app.me.sub) room.title = message.user.id;
    this.reloadSoon();
    return room;
  }

  /** A visible notice for a conversation message that is not on screen. */
  notice(room, message) {
    const who = message.user.name || message.user.id;
    // A private room's title comes with the list (reloading now): its name means nothing.
    const title = room.title === room.name ? "a private room" : room.title;
    const where = room.kind === "direct" ? `New direct message from ${who}` : `New message in ${title} from ${who}`;
    toast(where, "notice");
  }

  async openDm(user) {
    const ack = await this.request("open_dm", { user });
    if (!ack) return false;
    this.apply(ack);
    await this.ctx.joinRoom(ack.room, { select: true });
    return true;
  }

  async createRoom(title, members) {
    const ack = await this.request("create_room", { kind: "private", title, members });
    if (!ack) return;
    $("create-title").value = "";
    $("create-members").value = "";
    this.apply(ack);
    await this.ctx.joinRoom(ack.room, { select: true });
  }

  async listMembers(room) {
    const ack = await this.request("members", { room: room.name, limit: 500 });
    if (!ack) return null;
    room.members = ack.members.length;
    this.ctx.sidebar.update(room, this.ctx.app.active === room.name);
    return ack.members;
  }

  async addMember(room, user) {
    const ack = await this.request("add_member", { room: room.name, user });
    if (ack) await this.ctx.members.refresh(room);
    return Boolean(ack);
  }

  /** Remove a member (or oneself: leaving); true if the server agreed. */
  async removeMember(room, user) {
    const ack = await this.request("remove_member", { room: room.name, user });
    if (ack && user !== this.ctx.app.me.sub) await this.ctx.members.refresh(room);
    return Boolean(ack);
  }

  onMemberAdded(event) {
    const room = this.ctx.app.rooms.get(event.room);
    if (event.user === this.ctx.app.me.sub && !room) {
      // Invited (or someone opened a DM with us): it shows up in the list, unjoined.
      // A DM is announced by its first message; an invitation to a private room right away.
      if (event.by !== this.ctx.app.me.sub && !event.room.startsWith("dm:")) {
        toast(`${event.by} added you to a private room`, "notice");
      }
      this.reloadSoon();
      return;
    }
    if (room) {
      if (event.user === this.ctx.app.me.sub) room.role = event.role;
      this.ctx.members.refresh(room);
      this.reloadSoon();
    }
  }

  onMemberRemoved(event) {
    const room = this.ctx.app.rooms.get(event.room);
    if (!room) return;
    if (event.user === this.ctx.app.me.sub) {
      if (event.by !== this.ctx.app.me.sub) banner(`Removed from ${this.titleOf(room.name)} by ${event.by}`);
      this.ctx.dropRoom(room.name);
      return;
    }
    this.ctx.members.refresh(room);
    this.reloadSoon();
  }

  onRoleChanged(event) {
    const room = this.ctx.app.rooms.get(event.room);
    if (!room) return;
    if (event.user === this.ctx.app.me.sub) {
      room.role = event.role;
      this.ctx.sidebar.update(room, this.ctx.app.active === room.name);
    }
    this.ctx.members.refresh(room);
  }

  /** An acked request; an ack error is shown by its code and answers null. */
  async request(event, payload) {
    if (!this.conn) return null;
    try {
      return await this.conn.request(event, payload);
    } catch (error) {
      if (!(error instanceof AckError)) throw error;
      ackError(event, error);
      return null;
    }
  }
}
