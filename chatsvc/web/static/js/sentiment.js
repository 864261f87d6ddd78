// Marking a post bullish or bearish (issue 25's `message {..., sentiment}`): two toggle
// buttons in the composer, at most one pressed, cleared after each send and on a room
// switch; offered in public rooms only (the room header's rolling counts are theirs). A
// message carrying a mark shows it next to its time.
import { $, h } from "./dom.js";

export const MARKS = {
  bullish: { symbol: "▲", label: "bullish" },
  bearish: { symbol: "▼", label: "bearish" },
};

export class SentimentToggle {
  constructor() {
    this.value = null; // "bullish" | "bearish" | null
    this.room = null;
    this.buttons = [...$("sentiment").querySelectorAll("button[data-sentiment]")];
    for (const button of this.buttons) {
      button.addEventListener("click", () => this.choose(button.dataset.sentiment));
    }
  }

  /** Press a mark; pressing the pressed one takes it off. */
  choose(mark) {
    this.value = this.value === mark || !Object.hasOwn(MARKS, mark) ? null : mark;
    this.render();
  }

  /** The mark of the next post, or null; a send takes it and the toggle clears. */
  take() {
    const mark = this.value;
    this.clear();
    return mark;
  }

  clear() {
    this.value = null;
    this.render();
  }

  /** The room on screen: shown for a public room; another room starts unmarked. */
  setRoom(room) {
    if (room?.name !== this.room) this.clear();
    this.room = room?.name ?? null;
    $("sentiment").hidden = !room || room.kind !== "public";
  }

  render() {
    for (const button of this.buttons) {
      button.setAttribute("aria-pressed", String(button.dataset.sentiment === this.value));
    }
  }
}

/** "▲ bullish" next to a message's time, or null for an unmarked message. */
export function sentimentMark(sentiment) {
  if (!Object.hasOwn(MARKS, sentiment)) return null;
  const mark = MARKS[sentiment];
  return h("span", { class: "sentiment-mark", dataset: { sentiment }, text: `${mark.symbol} ${mark.label}` });
}
