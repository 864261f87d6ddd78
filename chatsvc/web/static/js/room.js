// What the client knows about one joined room. Message ids are time-sortable (ULID layout),
// so order is by id; each id is kept once (catch-up and live delivery may both bring it).

export class Room {
  constructor(name) {
    this.name = name;
    this.messages = new Map(); // id -> message as the server sent it
    this.olderCursor = null; // history's next_before; null once the first message is loaded
    this.historyLoaded = false;
    this.loadingOlder = false;
    this.unread = 0;
    this.online = 0;
    this.typing = new Map(); // user id -> {name, until}
    this.typingCount = { count: 0, until: 0 }; // a big room's aggregate: how many others type
    this.reads = new Map(); // user id -> {name, message_id}: the newest each one has read
    this.lastReadSent = null;
    // Conversations (README, "Conversations"): what my_rooms says about the room.
    this.kind = name.startsWith("dm:") ? "direct" : name.startsWith("priv:") ? "private" : "public";
    this.title = name;
    this.role = null;
    this.members = null;
    this.lastMessage = null;
    this.activity = ""; // the newest message id seen or listed: the list's order
    this.joined = false;
    this.pos = null; // the newest stream position seen: the `since` of a rejoin
  }

  /** Keep the newest position: "<epoch>:<n>", n grows within an epoch; a new epoch wins. */
  seePos(pos) {
    if (typeof pos !== "string") return;
    const [epoch, n] = splitPos(pos);
    const [oldEpoch, oldN] = this.pos ? splitPos(this.pos) : [null, -1];
    if (epoch !== oldEpoch || n > oldN) this.pos = pos;
  }

  /** Forget every message (a `reset` answer replaces what was shown). */
  clear() {
    this.messages.clear();
    this.olderCursor = null;
    this.historyLoaded = false;
  }

  /** The newest id seen, the `since` of the next catch-up. */
  get newest() {
    let newest = null;
    for (const id of this.messages.keys()) if (newest === null || id > newest) newest = id;
    return newest;
  }

  get hasOlder() {
    return !this.historyLoaded || this.olderCursor !== null;
  }

  /** Store (or replace, for an edit) a message; true if the id was new. */
  put(message) {
    const known = this.messages.has(message.id);
    const old = this.messages.get(message.id);
    // An edit or delete that raced ahead of its message's replay is kept, not overwritten.
    if (old && (old.deleted || (old.edited_at && !message.edited_at && !message.deleted))) return false;
    this.messages.set(message.id, message);
    this.seePos(message.pos);
    if (!message.deleted && message.id >= this.activity) {
      this.activity = message.id;
      this.lastMessage = message;
    }
    return !known;
  }

  /** The id of the message that sorts right after `id` (to insert before it), or null. */
  nextAfter(id) {
    let next = null;
    for (const other of this.messages.keys()) if (other > id && (next === null || other < next)) next = other;
    return next;
  }

  markDeleted(id) {
    const message = this.messages.get(id);
    if (!message) return null;
    const deleted = { ...message, text: "", deleted: true };
    this.messages.set(id, deleted);
    if (this.lastMessage?.id === id) {
      // The preview falls back to the newest message still there (my_rooms does the same).
      this.lastMessage = null;
      for (const other of this.messages.values()) {
        if (!other.deleted && (this.lastMessage === null || other.id > this.lastMessage.id)) this.lastMessage = other;
      }
    }
    return deleted;
  }

  /** Everyone whose newest read is `id`, for the receipts under that message. */
  readersOf(id) {
    return [...this.reads.values()].filter((r) => r.message_id === id).map((r) => r.name);
  }
}

function splitPos(pos) {
  const at = pos.lastIndexOf(":");
  return [pos.slice(0, at), Number(pos.slice(at + 1))];
}
