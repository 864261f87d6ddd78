// A message on its way, for the room's timeline and the thread panel alike: "sending…"
// (with its sentiment mark) until its ack, then failed with Retry and Discard.
import { h } from "./dom.js";
import { sentimentMark } from "./sentiment.js";

/** A message on its way: "sending…" until its ack. */
export function pendingElement(me, clientMsgId, text, sentiment = null) {
  return h(
    "li",
    { class: "msg mine pending", dataset: { client: clientMsgId } },
    h(
      "div",
      { class: "meta" },
      h("span", { class: "author", text: me.name }),
      h("span", { class: "state", text: "sending…" }),
      sentimentMark(sentiment),
    ),
    h("p", { class: "text", text }),
  );
}

/** A refused send: the error by its code, with Retry and Discard. */
export function markFailed(li, error, retry, discard) {
  li.classList.add("failed");
  li.querySelector(".state").textContent = `not sent: ${error.code} — ${error.detail || error.message}`;
  li.append(
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", text: "Retry", onclick: retry }),
      h("button", { type: "button", text: "Discard", onclick: discard }),
    ),
  );
}
