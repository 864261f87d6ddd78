#!/usr/bin/env node
// A scriptable socket.io-client v4 for tests/deploy: the real browser-side library,
// driven by a Python test over stdin/stdout (one JSON object per line each way).
//
// Commands (stdin):
//   {"cmd":"open","name":"a","url":"https://127.0.0.1:8443","token":"...",
//    "transports":["websocket"],"cookie":"chatsvc_route=1","jar":true,
//    "reconnect":false,"room":"r"}
//       jar: let engine.io-client keep cookies from Set-Cookie (withCredentials), like a
//       browser; cookie: send this Cookie header instead (a client pinned on purpose).
//       room: rejoin it with {since: <newest id seen>} after every reconnect, and call
//       connect() again after a server-side disconnect that session_end allowed, and
//       after a connect_error {code: "shutting_down"}. The server's answer also replays
//       the moments before since (CHATSVC_CATCHUP_OVERLAP_MS); the test drops repeats by id.
//       recover: opt into connection state recovery (auth {token, recover: true}); a
//       reconnect that comes back recovered (socket.recovered) does not rejoin: the server
//       restored its rooms and replayed what it missed.
//   {"cmd":"emit","name":"a","event":"join","data":{...},"id":7}   -> ack (5 s bound)
//   {"cmd":"drop","name":"a","pause_ms":500,"url":"..."}   close the Engine.IO connection under the socket (a network
//       drop as the client sees it: "transport close", then socket.io-client reconnects)
//   {"cmd":"close","name":"a"}   {"cmd":"quit"}
// Events (stdout): {"type": "connect"|"disconnect"|"connect_error"|"event"|"ack"|
//                   "rejoin"|"upgrade"|"error", "name": ..., ...}; connect has
//                   sid, recovered and n (1, 2, ...); event has data and, when the server
//                   appended more arguments (the recovery offset), extra
"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");

const ACK_TIMEOUT_MS = 5000;
const sockets = new Map();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function newest(a, b) {
  if (!a) return b;
  if (!b) return a;
  return a > b ? a : b;
}

function open(cmd) {
  const extraHeaders = {};
  if (cmd.cookie) extraHeaders.cookie = cmd.cookie;
  if (cmd.origin) extraHeaders.origin = cmd.origin;
  const socket = io(cmd.url, {
    transports: cmd.transports || ["websocket"],
    upgrade: cmd.upgrade !== undefined ? cmd.upgrade : true,
    auth: cmd.recover ? { token: cmd.token, recover: true } : { token: cmd.token },
    reconnection: !!cmd.reconnect,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0,
    timeout: 5000,
    withCredentials: !!cmd.jar,
    extraHeaders,
  });
  const state = { socket, lastId: null, connects: 0, allowReconnect: false };
  sockets.set(cmd.name, state);

  socket.on("connect", () => {
    state.connects += 1;
    const transport = socket.io.engine.transport.name;
    out({ type: "connect", name: cmd.name, sid: socket.id, eio: socket.io.engine.id, transport, n: state.connects, recovered: !!socket.recovered });
    socket.io.engine.once("upgrade", (t) => out({ type: "upgrade", name: cmd.name, transport: t.name }));
    if (cmd.room && state.connects > 1 && !(cmd.recover && socket.recovered)) {
      // What a real client does after a reconnect: rejoin, asking for what it missed,
      // page by page while the server says there is more.
      const n = state.connects;
      const rejoin = (since) => {
        const data = { room: cmd.room };
        if (since) data.since = since;
        socket.timeout(ACK_TIMEOUT_MS).emit("join", data, (err, ack) => {
          if (err) return out({ type: "rejoin", name: cmd.name, n, error: String(err) });
          const messages = (ack && ack.messages) || [];
          for (const m of messages) state.lastId = newest(state.lastId, m.id);
          out({ type: "rejoin", name: cmd.name, n, since: data.since || null, ack });
          if (ack && ack.ok && ack.has_more && messages.length) rejoin(messages[messages.length - 1].id);
          else out({ type: "rejoined", name: cmd.name, n });
        });
      };
      rejoin(state.lastId);
    }
  });
  socket.on("disconnect", (reason, details) => {
    out({ type: "disconnect", name: cmd.name, reason, description: details ? String(details.description || "") : "" });
    if (reason === "io server disconnect" && state.allowReconnect) {
      // socket.io-client does not reconnect after a server-side disconnect by itself.
      state.allowReconnect = false;
      setTimeout(() => socket.connect(), 50);
    }
  });
  socket.on("connect_error", (err) => {
    out({ type: "connect_error", name: cmd.name, message: err.message, data: err.data === undefined ? null : err.data, description: err.description ? String(err.description.message || err.description) : "" });
    if (cmd.room && err.data && err.data.code === "shutting_down") {
      // A draining replica still answers until its listener closes (in Kubernetes its
      // endpoint is already leaving the Service); socket.io-client never retries a refusal
      // by itself, so try again shortly, as the web client does.
      setTimeout(() => socket.connect(), 250);
    }
  });
  socket.onAny((event, data, ...extra) => {
    if (event === "message" && data && data.id) state.lastId = newest(state.lastId, data.id);
    if (event === "session_end" && data && data.reconnect && cmd.room) state.allowReconnect = true;
    const line = { type: "event", name: cmd.name, event, data };
    if (extra.length) line.extra = extra;
    out(line);
  });
}

function emit(cmd) {
  const state = sockets.get(cmd.name);
  if (!state) return out({ type: "error", name: cmd.name, id: cmd.id, message: "no such socket" });
  state.socket.timeout(cmd.timeout_ms || ACK_TIMEOUT_MS).emit(cmd.event, cmd.data, (err, ack) => {
    if (err) return out({ type: "ack", name: cmd.name, id: cmd.id, error: String(err) });
    if (ack && ack.ok && cmd.event === "join") {
      for (const m of ack.messages || []) state.lastId = newest(state.lastId, m.id);
    }
    out({ type: "ack", name: cmd.name, id: cmd.id, ack });
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return out({ type: "error", message: "bad command: " + e.message });
  }
  try {
    if (cmd.cmd === "open") open(cmd);
    else if (cmd.cmd === "emit") emit(cmd);
    else if (cmd.cmd === "drop") {
      const s = sockets.get(cmd.name);
      if (s) {
        // pause_ms: stay away this long before reconnecting (messages pile up meanwhile).
        // url: come back through another address (a load balancer picking another replica).
        if (cmd.url) s.socket.io.uri = cmd.url;
        if (cmd.pause_ms) {
          s.socket.io.reconnectionDelay(cmd.pause_ms);
          s.socket.io.reconnectionDelayMax(cmd.pause_ms);
        }
        s.socket.io.engine.close();
      }
      out({ type: "dropped", name: cmd.name });
    } else if (cmd.cmd === "close") {
      const s = sockets.get(cmd.name);
      if (s) s.socket.close();
      sockets.delete(cmd.name);
      out({ type: "closed", name: cmd.name });
    } else if (cmd.cmd === "quit") {
      for (const s of sockets.values()) s.socket.close();
      process.exit(0);
    } else out({ type: "error", message: "unknown command " + cmd.cmd });
  } catch (e) {
    out({ type: "error", name: cmd.name, message: String(e && e.stack ? e.stack : e) });
  }
});
rl.on("close", () => process.exit(0));
