// Connection state, the banner (session_end, kicked) and short-lived error toasts.
import { $, h } from "./dom.js";

const LABELS = {
  "signed-out": "signed out",
  connecting: "connecting…",
  connected: "connected",
  recovered: "connected · recovered",
  reconnecting: "reconnecting…",
  ended: "session ended",
};

/** Show the connection state; `detail` adds e.g. the attempt number. */
export function setState(state, detail = "") {
  const el = $("conn-state");
  el.dataset.state = state;
  el.textContent = (LABELS[state] || state) + (detail ? ` (${detail})` : "");
}

export function banner(text) {
  $("banner-text").textContent = text;
  $("banner").hidden = false;
}

export function clearBanner() {
  $("banner").hidden = true;
}

/** A short error notice, e.g. an ack's {code, message}. */
export function toast(text, kind = "error") {
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", text });
  $("toasts").append(item);
  setTimeout(() => item.remove(), 6000);
}

export function ackError(what, error) {
  toast(`${what}: ${error.code} — ${error.message}`);
}

$("banner-close").addEventListener("click", clearBanner);
