// The websocket handshake both load-generator clients share (the Socket.IO one in
// loadgen.mjs and the Centrifugo one in centrifugo.mjs): open the socket with the
// generator's deflate setting and a bounded handshake, and settle the connect promise once.
import WebSocket from "ws";

/**
 * Open a websocket to `target` for `client` (which has `gen`, `ws`, `connected`, `closed`)
 * and return `{ ws, settle }`; the caller adds its protocol's `open`/`message` handlers and
 * calls `settle(null)` once connected, `settle(err)` on refusal.
 *
 * The connect fails after `timeoutMs`, on a socket error, or when the socket closes; a close
 * (also a later one) marks the client closed and answers every callback still waiting in
 * `pending` (a Map) with null. `closedMessage(code, reason)` words the close's error.
 */
export function dial(client, target, localAddress, timeoutMs, options) {
  const { resolve, reject, pending, closedMessage } = options;
  const ws = new WebSocket(target, {
    localAddress,
    perMessageDeflate: client.gen.deflate,
    handshakeTimeout: timeoutMs,
  });
  client.ws = ws;
  const timer = setTimeout(() => {
    reject(new Error("connect timed out"));
    ws.terminate();
  }, timeoutMs);
  let settled = false;
  const settle = (err) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (err) reject(err);
    else resolve();
  };
  ws.on("error", (err) => settle(err));
  ws.on("close", (code, reason) => {
    client.connected = false;
    client.closed = true;
    settle(new Error(closedMessage(code, reason)));
    for (const [, cb] of pending) cb(null);
    pending.clear();
  });
  return { ws, settle };
}
