// Typing indicators. Sending is debounced: `typing: true` at most every few seconds while
// keys are pressed, `typing: false` after a pause or on send (each costs a rate-limit token).
// Others' indicators expire by themselves if their `false` never arrives.

const REPEAT_MS = 3000;
const IDLE_MS = 4000;
export const SHOW_MS = 6000;

export class TypingSender {
  constructor(send) {
    this.send = send; // (room, typing) => void
    this.room = null;
    this.sentAt = 0;
    this.idle = null;
  }

  /** A key was pressed in `room`'s composer. */
  input(room) {
    if (this.room !== room) this.stop();
    this.room = room;
    const now = Date.now();
    if (now - this.sentAt > REPEAT_MS) {
      this.sentAt = now;
      this.send(room, true);
    }
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.stop(), IDLE_MS);
  }

  /** Sent, switched room or paused: say we stopped, once. */
  stop() {
    clearTimeout(this.idle);
    if (this.room !== null && this.sentAt) this.send(this.room, false);
    this.room = null;
    this.sentAt = 0;
  }
}

/** "Alice is typing…" / "Alice and Bob are typing…" / "3 people are typing…". */
export function typingText(room, now = Date.now()) {
  for (const [id, entry] of room.typing) if (entry.until < now) room.typing.delete(id);
  const names = [...room.typing.values()].map((e) => e.name);
  // A big room names only the first few typists and counts the rest (README, Big rooms).
  const counted = room.typingCount && room.typingCount.until >= now ? room.typingCount.count : 0;
  if (counted > names.length) return counted === 1 ? "Someone is typing…" : `${counted} people are typing…`;
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}
