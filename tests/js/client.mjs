#!/usr/bin/env node
// Drives the official socket.io-client v4 against a running chatsvc for tests/js.
//
//   node client.mjs SCENARIO
//
// Configuration comes from the environment:
//   CHATSVC_URL        http://127.0.0.1:PORT
//   CHATSVC_TOKEN      the first client's token (sent raw in auth {token}, as Hoppscotch does)
//   CHATSVC_TOKEN2     the second client's token (scenario "chat")
//   CHATSVC_ROOM       the room to use
//   CHATSVC_TRANSPORT  "websocket" or "polling" (only that transport, no upgrade)
//   CHATSVC_AUTH       "raw" (default), "bearer" (auth {token: "Bearer ..."}) or "none"
//
// Scenarios:
//   connect   connect, join, print the ack, disconnect
//   rejected  connect expecting a refusal; print connect_error {message, data}
//   chat      two clients: join (object and JSON text), message, receive, retry, typing,
//             history, a bad payload; every ack and received event is printed
//   listen    connect, join, print {"type":"ready"}, then print every event until a
//             message whose text is "bye" arrives
//   crowd     many clients (CHATSVC_TOKENS) join one big room at once; see scenarios.crowd
//   drain     connect, join, print {"type":"ready"}, then wait for session_end and the
//             disconnect that follows (the server is being stopped); then stay alive, like
//             a browser tab, until stdin closes
//
// Every line on stdout is one JSON object: {"type": "connect"|"connect_error"|"ack"|
// "event"|"ready"|"disconnect"|"done"|"fail", "client": "a"|"b", ...}. The whole run is
// bounded; on any failure the script prints {"type":"fail"} and exits 1.

import { io } from "socket.io-client";

const RUN_TIMEOUT_MS = 20000;
const ACK_TIMEOUT_MS = 5000;
const EVENT_TIMEOUT_MS = 5000;

const env = process.env;
const url = env.CHATSVC_URL;
const room = env.CHATSVC_ROOM || "js-room";
const transport = env.CHATSVC_TRANSPORT || "websocket";

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(reason) {
  out({ type: "fail", reason: String(reason && reason.stack ? reason.message : reason) });
  process.exit(1);
}

const guard = setTimeout(() => fail(`scenario did not finish within ${RUN_TIMEOUT_MS} ms`), RUN_TIMEOUT_MS);

function authFor(token) {
  const style = env.CHATSVC_AUTH || "raw";
  if (style === "none" || token === undefined) return {};
  return { token: style === "bearer" ? `Bearer ${token}` : token };
}

// A socket that records every event into per-event queues so the scenario can await them.
function open(name, token) {
  const socket = io(url, {
    transports: [transport],
    auth: authFor(token),
    reconnection: false,
    forceNew: true,
    timeout: ACK_TIMEOUT_MS,
  });
  const queues = new Map();
  const waiters = new Map();
  socket.onAny((event, data) => {
    out({ type: "event", client: name, event, data });
    const waiting = waiters.get(event);
    if (waiting && waiting.length) {
      waiting.shift()(data);
    } else {
      if (!queues.has(event)) queues.set(event, []);
      queues.get(event).push(data);
    }
  });
  socket.on("disconnect", (reason) => out({ type: "disconnect", client: name, reason }));
  const client = {
    name,
    socket,
    connected: new Promise((resolve, reject) => {
      socket.on("connect", () => {
        out({ type: "connect", client: name, transport: socket.io.engine.transport.name });
        resolve();
      });
      socket.on("connect_error", (err) => {
        out({ type: "connect_error", client: name, message: err.message, data: err.data ?? null });
        reject(err);
      });
    }),
    async call(event, data) {
      const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, data);
      out({ type: "ack", client: name, event, ack });
      return ack;
    },
    next(event) {
      const queued = queues.get(event);
      if (queued && queued.length) return Promise.resolve(queued.shift());
      return new Promise((resolve, reject) => {
        if (!waiters.has(event)) waiters.set(event, []);
        const list = waiters.get(event);
        const waiter = (data) => {
          clearTimeout(timer);
          resolve(data);
        };
        // A waiter that timed out must not swallow the next event.
        const timer = setTimeout(() => {
          list.splice(list.indexOf(waiter), 1);
          reject(new Error(`no ${event} within ${EVENT_TIMEOUT_MS} ms`));
        }, EVENT_TIMEOUT_MS);
        list.push(waiter);
      });
    },
  };
  return client;
}

function expectOk(ack, what) {
  if (!ack || ack.ok !== true) throw new Error(`${what}: ${JSON.stringify(ack)}`);
  return ack;
}

const scenarios = {
  async connect() {
    const a = open("a", env.CHATSVC_TOKEN);
    await a.connected;
    expectOk(await a.call("join", { room }), "join");
    a.socket.disconnect();
  },

  async rejected() {
    const a = open("a", env.CHATSVC_TOKEN);
    try {
      await a.connected;
    } catch {
      return;
    } finally {
      a.socket.disconnect();
    }
    throw new Error("the server accepted a connection it should have refused");
  },

  async chat() {
    const a = open("a", env.CHATSVC_TOKEN);
    const b = open("b", env.CHATSVC_TOKEN2);
    await Promise.all([a.connected, b.connected]);
    expectOk(await a.call("join", { room }), "join a");
    // Hoppscotch sends the editor text as a string.
    expectOk(await b.call("join", JSON.stringify({ room })), "join b");
    await a.next("presence");

    const sent = expectOk(await a.call("message", { room, text: "hello from js", client_msg_id: "js-1" }), "message");
    const got = await b.next("message");
    if (got.id !== sent.message.id) throw new Error("b received a different message");

    expectOk(await a.call("message", JSON.stringify({ room, text: "sent as JSON text" })), "message text");
    await b.next("message");

    const retry = expectOk(await a.call("message", { room, text: "hello from js", client_msg_id: "js-1" }), "retry");
    if (retry.duplicate !== true || retry.message.id !== sent.message.id) throw new Error("retry was not idempotent");

    expectOk(await a.call("typing", { room, typing: true }), "typing");
    await b.next("typing");

    expectOk(await b.call("history", { room, limit: 10 }), "history");
    await a.call("message", "this is not json");
    await a.call("message", { room, text: 42 });
    await a.call("no_such_event", { room });

    a.socket.disconnect();
    b.socket.disconnect();
  },

  async listen() {
    const a = open("a", env.CHATSVC_TOKEN);
    await a.connected;
    expectOk(await a.call("join", { room }), "join");
    out({ type: "ready", client: "a" });
    for (;;) {
      // Each wait is bounded by EVENT_TIMEOUT_MS, the whole loop by RUN_TIMEOUT_MS.
      const message = await a.next("message").catch(() => null);
      if (message && message.text === "bye") break;
    }
    a.socket.disconnect();
  },
};

scenarios.drain = async () => {
  const a = open("a", env.CHATSVC_TOKEN);
  await a.connected;
  const gone = new Promise((resolve) => a.socket.on("disconnect", resolve));
  expectOk(await a.call("join", { room }), "join");
  out({ type: "ready", client: "a" });
  // Unbounded here on purpose: the whole run is bounded by RUN_TIMEOUT_MS.
  await new Promise((resolve) => a.socket.on("session_end", resolve));
  await gone;
  out({ type: "left", client: "a" });
  await new Promise((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.resume();
  });
};

// crowd: CHATSVC_TOKENS (a JSON array) connect at once; "a" (the first) joins, then all the
// others join in one burst; "a" waits for presence {online: all} and, after the first five
// others start typing, for typing {count: 5}. Every event "a" receives is printed.
scenarios.crowd = async () => {
  const tokens = JSON.parse(env.CHATSVC_TOKENS);
  const all = tokens.map((t, i) => open(i === 0 ? "a" : `c${i}`, t));
  await Promise.all(all.map((c) => c.connected));
  const [a, ...others] = all;
  expectOk(await a.call("join", { room }), "join a");
  await Promise.all(others.map((c) => c.call("join", { room }).then((ack) => expectOk(ack, `join ${c.name}`))));
  for (;;) {
    const p = await a.next("presence");
    if (p.online === all.length && p.user === undefined) break;
  }
  await Promise.all(others.slice(0, 5).map((c) => c.call("typing", { room, typing: true })));
  for (;;) {
    const t = await a.next("typing");
    if (t.count === 5) break;
  }
  out({ type: "ready", client: "a" });
  for (const c of all) c.socket.disconnect();
};

const scenario = scenarios[process.argv[2]];
if (!url) fail("CHATSVC_URL is not set");
if (!scenario) fail(`unknown scenario ${process.argv[2]}; one of ${Object.keys(scenarios).join(", ")}`);
try {
  await scenario();
  clearTimeout(guard);
  out({ type: "done" });
  process.exit(0);
} catch (err) {
  fail(err);
}
