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
    // Issue 25: unread mentions of the signed-in user, pinned message ids, who was seen here
    // (mention autocomplete), and the header's slow mode and sentiment.
    this.mentions = 0;
    this.pinned = new Set();
    this.people = new Map(); // user id -> display name
    this.slowMode = null; // {seconds, reason} while on
    this.slowUntil = 0; // a slow_mode refusal: no send before this time (ms)
    this.sentiment = null; // {bullish, bearish, window}
    this.detailsStale = true; // pins and room_info not asked since the last join
  }

  /** Someone who posted, typed, read or joined here: a mention candidate. */
  seeUser(user) {
    if (user && typeof user.id === "string") this.people.set(user.id, user.name || user.id);
  }

  /** Slow/surge mode, sentiment and counts from a join answer, `room_mode`, `sentiment` or
   * `room_info` (issue 25's wire names); fields a payload lacks keep their value. */
  info(data) {
    if (!data || typeof data !== "object") return;
    if (typeof data.online === "number") this.online = data.online;
    // `slow_mode_seconds` is room_mode's; a room_info answer may nest it or name it slow_mode.
    const slow = data.slow_mode_seconds ?? (typeof data.slow_mode === "number" ? data.slow_mode : data.slow_mode?.seconds);
    if (typeof slow === "number") this.slowMode = slow > 0 ? { seconds: slow, reason: data.reason ?? data.slow_mode?.reason ?? null } : null;
    const sentiment = sentimentOf(data.sentiment ?? data);
    if (sentiment) this.sentiment = sentiment;
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
    if (old && !message.deleted) {
      // Live messages and edits carry no reply counts or reactions: keep the ones known.
      const kept = {};
      for (const key of ANNOTATIONS) if (!(key in message) && key in old) kept[key] = old[key];
      message = { ...message, ...kept };
    }
    this.seeUser(message.user);
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

  /** An edit (its ack or `message_edited`): the message as it now shows. */
  edited(message) {
    this.put(message);
    return this.messages.get(message.id) || null;
  }

  /** Merge fields (a reply count) into a known message; the new message, or null. */
  annotate(id, fields) {
    const message = this.messages.get(id);
    if (!message || message.deleted) return null;
    const updated = { ...message, ...fields };
    this.messages.set(id, updated);
    return updated;
  }

  /** A reaction's new count; `own` "add"/"remove" when it was the signed-in user's. */
  reacted(id, emoji, count, own) {
    const message = this.messages.get(id);
    const updated = message ? withReaction(message, emoji, count, own) : null;
    if (updated) this.messages.set(id, updated);
    return updated;
  }

  markDeleted(id) {
    const message = this.messages.get(id);
    if (!message) return null;
    const { reactions, own_reactions, ...rest } = message; // a deleted message shows none
    const deleted = { ...rest, text: "", deleted: true };
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

  /** A deleted message's text must not live on in its replies' quotes (the server blanks
   * them on the next read too): the replies whose quote changed. */
  unquote(id) {
    const changed = [];
    for (const [key, message] of this.messages) {
      if (message.reply_to?.id !== id || message.reply_to.deleted) continue;
      const updated = { ...message, reply_to: unquoted(message.reply_to) };
      this.messages.set(key, updated);
      changed.push(updated);
    }
    return changed;
  }

  /** Everyone whose newest read is `id`, for the receipts under that message. */
  readersOf(id) {
    return [...this.reads.values()].filter((r) => r.message_id === id).map((r) => r.name);
  }
}

/** `message` with an emoji's new count (and the user's own, for "add"/"remove"), or null. */
export function withReaction(message, emoji, count, own) {
  if (message.deleted || typeof emoji !== "string" || typeof count !== "number") return null;
  const reactions = { ...(message.reactions || {}) };
  if (count > 0) reactions[emoji] = count;
  else delete reactions[emoji];
  const mine = new Set(message.own_reactions || []);
  if (own === "add") mine.add(emoji);
  else if (own === "remove") mine.delete(emoji);
  return { ...message, reactions, own_reactions: [...mine] };
}

/** A reply's quote of a deleted parent: who wrote it, not what. */
export const unquoted = (quote) => ({ ...quote, preview: "", deleted: true });

const ANNOTATIONS = ["reactions", "own_reactions", "reply_count", "last_reply_at"];

/** {bullish, bearish, window} from a sentiment payload: counts for the last hour (else the
 * day), as `{hour: {bullish, bearish}, day: {...}}` or flat `{bullish, bearish}`. */
export function sentimentOf(data) {
  if (!data || typeof data !== "object") return null;
  for (const window of ["hour", "day"]) {
    const counts = data[window];
    if (counts && typeof counts.bullish === "number" && typeof counts.bearish === "number") {
      return { bullish: counts.bullish, bearish: counts.bearish, window };
    }
  }
  if (typeof data.bullish === "number" && typeof data.bearish === "number") {
    return { bullish: data.bullish, bearish: data.bearish, window: null };
  }
  return null;
}

function splitPos(pos) {
  const at = pos.lastIndexOf(":");
  return [pos.slice(0, at), Number(pos.slice(at + 1))];
}
