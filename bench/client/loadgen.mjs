// Load generator for the chatsvc benchmarks: a lean Socket.IO v4 client straight on
// Engine.IO v4 websockets (the `ws` package), so one Node process can hold thousands of
// connections and still not be the bottleneck.
//
// It is driven by bench/run.py over stdin/stdout, one JSON object per line:
//   {"cmd": "connect", ...}  -> {"ok": true, ...}
// Every command is bounded in time and count; only 127.0.0.x addresses are accepted.
// `connect` takes `protocol`: "socketio" (chatsvc, the Node peer; default) or "centrifugo"
// (the Centrifugo peer, bench/client/centrifugo.mjs); every later command drives either.

import crypto from "node:crypto";
import readline from "node:readline";
import { performance } from "node:perf_hooks";
import { CentrifugoClient } from "./centrifugo.mjs";
import { dial } from "./dial.mjs";

const MARK = "#B";

function fail(message) {
  throw new Error(message);
}

function b64url(data) {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 JWT with the claims chatsvc requires (sub, exp) and a display name. */
function mintJwt(secret, sub, name, ttlSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, name, iat: now, exp: now + ttlSeconds }));
  const sig = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

function checkLoopback(url) {
  const host = new URL(url).hostname;
  if (!/^127\.\d+\.\d+\.\d+$/.test(host) && host !== "localhost") {
    fail(`refusing to target ${host}: the benchmark only talks to 127.0.0.0/8`);
  }
}

function percentiles(values) {
  if (values.length === 0) return { n: 0, p50: null, p99: null, p999: null, max: null, mean: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    max: sorted[sorted.length - 1],
    mean: sum / sorted.length,
  };
}

/** A growable float array (latency samples) without per-sample allocation. */
class Samples {
  constructor(capacity = 1 << 16) {
    this.data = new Float64Array(capacity);
    this.length = 0;
  }
  push(v) {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  values() {
    return this.data.subarray(0, this.length);
  }
}

/** One Socket.IO client over a bare Engine.IO websocket. */
class Client {
  constructor(gen, index) {
    this.gen = gen;
    this.index = index;
    this.ws = null;
    this.nextAck = 1;
    this.acks = new Map();
    this.connected = false;
    this.closed = false;
  }

  open(url, auth, localAddress, timeoutMs) {
    return new Promise((resolve, reject) => {
      const target = `${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
      const { ws, settle } = dial(this, target, localAddress, timeoutMs, {
        resolve,
        reject,
        pending: this.acks,
        closedMessage: () => "closed during connect",
      });
      ws.on("message", (raw, isBinary) => {
        if (isBinary) return;
        const frame = raw.toString();
        const kind = frame.charCodeAt(0);
        if (kind === 52 /* '4' message */) {
          this.onPacket(frame, settle);
        } else if (kind === 50 /* '2' ping */) {
          ws.send("3");
        } else if (kind === 48 /* '0' open */) {
          ws.send(`40${JSON.stringify(auth)}`);
        }
      });
    });
  }

  onPacket(frame, settle) {
    const type = frame.charCodeAt(1);
    if (type === 50 /* '2' EVENT */) {
      this.gen.onEvent(this, frame);
    } else if (type === 51 /* '3' ACK */) {
      const bracket = frame.indexOf("[");
      const id = Number.parseInt(frame.slice(2, bracket), 10);
      const cb = this.acks.get(id);
      if (cb) {
        this.acks.delete(id);
        cb(frame.slice(bracket));
      }
    } else if (type === 48 /* '0' CONNECT */) {
      this.connected = true;
      settle(null);
    } else if (type === 52 /* '4' CONNECT_ERROR */) {
      settle(new Error(`connect_error ${frame.slice(2)}`));
    }
  }

  /** Emit with an ack; `cb(rawJsonArrayOrNull)`. */
  emit(event, data, cb) {
    if (!this.connected) {
      cb(null);
      return;
    }
    const id = this.nextAck++;
    this.acks.set(id, cb);
    this.ws.send(`42${id}${JSON.stringify([event, data])}`);
  }

  /** `join {room, since?}` with its ack; resolves `{ok, reply}`. */
  async joinRoom(room, since, timeoutMs) {
    const ack = await this.request("join", since ? { room, since } : { room }, timeoutMs);
    return { ok: Boolean(ack && ack.ok === true), reply: ack };
  }

  /** `message {room, text, client_msg_id}` with its ack; `cb(ok, rawAckOrNull)`. */
  sendChat(room, text, clientMsgId, cb) {
    this.emit("message", { room, text, client_msg_id: clientMsgId }, (raw) =>
      cb(raw !== null && raw.startsWith('[{"ok":true'), raw),
    );
  }

  request(event, data, timeoutMs) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.emit(event, data, (raw) => {
        clearTimeout(timer);
        resolve(raw === null ? null : JSON.parse(raw)[0]);
      });
    });
  }

  close() {
    if (this.ws && !this.closed) this.ws.terminate();
  }
}

class Generator {
  constructor() {
    this.clients = [];
    this.deflate = false;
    this.sentAt = new Float64Array(1);
    this.senderOf = new Int32Array(1);
    this.echoes = 0;
    this.protocol = "socketio";
    this.received = 0;
    this.latencies = new Samples();
    this.ackLatencies = new Samples();
    this.seqBase = 0;
    this.nextSeq = 1;
    this.otherEvents = 0;
    this.presenceEvents = 0;
    this.clientMsgId = 1;
  }

  onEvent(client, frame) {
    if (!frame.startsWith('42["message"')) {
      this.otherEvents++;
      if (frame.startsWith('42["presence"')) this.presenceEvents++;
      return;
    }
    this.onDelivery(client, frame);
  }

  /** A delivered chat message (any protocol): its text carries the send sequence number. */
  onDelivery(client, frame) {
    const at = frame.indexOf(MARK);
    if (at < 0) return;
    const seq = Number.parseInt(frame.slice(at + MARK.length, at + MARK.length + 12), 10);
    // Sequence numbers grow across commands, so a straggler from an earlier command
    // (a warm-up) falls outside this command's window and is ignored.
    const sent = this.sentAt[seq - this.seqBase];
    if (!(sent > 0)) return;
    // Centrifugo also sends a publication to its publisher: not a delivery to the rest of
    // the room, so it is counted apart (chatsvc and socket.io never echo).
    if (this.senderOf[seq - this.seqBase] === client.index) {
      this.echoes++;
      return;
    }
    this.received++;
    this.latencies.push(performance.now() - sent);
  }

  /**
   * Open `n` connections, `concurrency` at a time. With `join_rooms`, the k-th one then joins
   * join_rooms[k % length] (`join {room, since}` on Socket.IO, a subscribe on Centrifugo)
   * before it counts as done:
   * the connect storm. With `join_sets` (arrays of rooms), the k-th one joins every room of
   * join_sets[k % length] instead: the join storm. `deadline_ms` bounds the whole command:
   * connections not started by then are counted in `not_started`.
   */
  async connect(cmd) {
    checkLoopback(cmd.url);
    this.deflate = Boolean(cmd.deflate);
    const protocol = cmd.protocol ?? "socketio";
    if (protocol !== "socketio" && protocol !== "centrifugo") fail(`unknown protocol ${protocol}`);
    if (this.clients.length > 0 && protocol !== this.protocol) fail("one protocol per load generator");
    this.protocol = protocol;
    const Kind = protocol === "centrifugo" ? CentrifugoClient : Client;
    const n = cmd.n;
    if (!(n >= 1 && n <= 50000)) fail("n must be 1..50000");
    const sources = Math.max(1, Math.min(cmd.sources ?? 1, 250));
    const concurrency = Math.max(1, cmd.concurrency ?? 64);
    const timeoutMs = cmd.timeout_ms ?? 20000;
    const deadline = performance.now() + (cmd.deadline_ms ?? 600000);
    const started = performance.now();
    const first = this.clients.length;
    const perClient = new Samples(n);
    const joinRooms = cmd.join_rooms?.length ? cmd.join_rooms : null;
    const joinSets = cmd.join_sets?.length ? cmd.join_sets : null;
    let next = 0;
    let failures = 0;
    let firstError = null;
    const worker = async () => {
      while (next < n && performance.now() < deadline) {
        const i = first + next++;
        const client = new Kind(this, i);
        const sub = `${cmd.user_prefix ?? "u"}${i}`;
        const auth = cmd.secret ? { token: mintJwt(cmd.secret, sub, `User ${i}`, 3600) } : {};
        const local = `127.0.0.${1 + (i % sources)}`;
        const t0 = performance.now();
        try {
          await client.open(cmd.url, auth, local, timeoutMs);
          if (joinRooms) {
            const room = joinRooms[(i - first) % joinRooms.length];
            const joined = await client.joinRoom(room, cmd.since, timeoutMs);
            if (!joined.ok) throw new Error(`join refused: ${JSON.stringify(joined.reply)}`);
          }
          for (const room of joinSets ? joinSets[(i - first) % joinSets.length] : []) {
            const joined = await client.joinRoom(room, cmd.since, timeoutMs);
            if (!joined.ok) throw new Error(`join refused: ${JSON.stringify(joined.reply)}`);
          }
          perClient.push(performance.now() - t0);
          this.clients[i] = client;
        } catch (err) {
          failures++;
          firstError ??= String(err.message ?? err);
          client.close();
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    this.clients = this.clients.filter(Boolean);
    return {
      connected: this.clients.length - first,
      failures,
      not_started: n - next,
      first_error: firstError,
      seconds: (performance.now() - started) / 1000,
      per_client_ms: percentiles(perClient.values()),
      total: this.clients.length,
    };
  }

  /** Join client i to rooms[i % rooms.length] (or all clients to explicit groups). */
  async join(cmd) {
    const rooms = cmd.rooms;
    const members = cmd.members ?? this.clients.map((_, i) => i);
    const concurrency = cmd.concurrency ?? 64;
    let next = 0;
    let failures = 0;
    let firstError = null;
    const worker = async () => {
      while (next < members.length) {
        const k = next++;
        const client = this.clients[members[k]];
        const room = rooms[k % rooms.length];
        const joined = await client.joinRoom(room, cmd.since, cmd.timeout_ms ?? 20000);
        if (!joined.ok) {
          failures++;
          firstError ??= JSON.stringify(joined.reply);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { joined: members.length - failures, failures, first_error: firstError };
  }

  /**
   * Open-loop fan-out: `senders` (client indexes, each with its room) send at a fixed total
   * `rate` for `seconds`; latency is measured from each message's *scheduled* send time, so a
   * server that falls behind cannot hide it (no coordinated omission).
   */
  async fanout(cmd) {
    const { senders, rate, seconds } = cmd;
    if (!(rate > 0 && rate <= 100000)) fail("rate must be in (0, 100000]");
    if (!(seconds > 0 && seconds <= 120)) fail("seconds must be in (0, 120]");
    const total = Math.ceil(rate * seconds);
    this.seqBase = this.nextSeq;
    this.nextSeq += total;
    this.sentAt = new Float64Array(total);
    this.senderOf = new Int32Array(total).fill(-1);
    this.received = 0;
    this.echoes = 0;
    // `accumulate`: this command continues the previous one's latency samples (one measurement
    // split into windows, so the runner can read the server's CPU time at each boundary).
    if (!cmd.accumulate) {
      this.latencies = new Samples();
      this.ackLatencies = new Samples();
    }
    const padding = "x".repeat(Math.max(0, (cmd.text_bytes ?? 64) - 16));
    let acked = 0;
    let ackErrors = 0;
    let firstError = null;
    let sent = 0;
    const sendOne = (scheduled, measured) => {
      const sender = senders[sent % senders.length];
      const client = this.clients[sender.client];
      const mySeq = this.seqBase + sent;
      this.sentAt[sent] = scheduled;
      this.senderOf[sent] = client.index;
      sent++;
      client.sendChat(
        sender.room,
        `${MARK}${mySeq}# ${padding}`,
        // client_msg_id is chatsvc's idempotency key: unique across every command of the run.
        `m${this.clientMsgId++}`,
        (ok, raw) => {
          if (ok) {
            if (measured) {
              acked++;
              this.ackLatencies.push(performance.now() - scheduled);
            }
          } else {
            ackErrors++;
            firstError ??= raw;
          }
        },
      );
    };
    const run = (count, measured) =>
      new Promise((resolve) => {
        const start = performance.now();
        let done = 0;
        const interval = 1000 / rate;
        const tick = () => {
          const now = performance.now();
          const due = Math.min(count, Math.floor((now - start) / interval) + 1);
          while (done < due) {
            sendOne(start + done * interval, measured);
            done++;
          }
          if (done >= count) resolve();
          else setTimeout(tick, Math.max(0, Math.min(5, start + done * interval - now)));
        };
        tick();
      });
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    await run(total, true);
    const sendSeconds = (performance.now() - started) / 1000;
    // Let in-flight deliveries land, bounded.
    const expected = total * (cmd.recipients_per_message ?? 0);
    const drainUntil = performance.now() + (cmd.drain_ms ?? 3000);
    while (performance.now() < drainUntil && (this.received < expected || acked + ackErrors < total)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const elapsed = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return {
      sent: total,
      send_seconds: sendSeconds,
      elapsed_seconds: elapsed,
      acked,
      ack_errors: ackErrors,
      first_error: firstError,
      delivered: this.received,
      echoes: this.echoes,
      expected,
      latency_ms: percentiles(this.latencies.values()),
      ack_latency_ms: percentiles(this.ackLatencies.values()),
      loadgen_cpu_seconds: (cpu.user + cpu.system) / 1e6,
    };
  }

  /** Closed loop: `workers` clients ask for history pages back to back for `seconds`. */
  async history(cmd) {
    const { room, seconds, limit } = cmd;
    if (!(seconds > 0 && seconds <= 120)) fail("seconds must be in (0, 120]");
    const workers = cmd.workers ?? 4;
    const pages = cmd.pages ?? 1;
    const lat = new Samples();
    let errors = 0;
    let firstError = null;
    let requests = 0;
    const deadline = performance.now() + seconds * 1000;
    const maxRequests = cmd.max_requests ?? 1000000;
    const cpu0 = process.cpuUsage();
    const worker = async (w) => {
      const client = this.clients[w % this.clients.length];
      while (performance.now() < deadline && requests < maxRequests) {
        let before = null;
        for (let p = 0; p < pages && performance.now() < deadline; p++) {
          const payload = before ? { room, limit, before } : { room, limit };
          const t0 = performance.now();
          requests++;
          const ack = await client.request("history", payload, 10000);
          lat.push(performance.now() - t0);
          if (!ack || ack.ok !== true) {
            errors++;
            firstError ??= JSON.stringify(ack);
            break;
          }
          before = ack.next_before;
          if (!before) break;
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    const cpu = process.cpuUsage(cpu0);
    return {
      requests,
      errors,
      first_error: firstError,
      latency_ms: percentiles(lat.values()),
      loadgen_cpu_seconds: (cpu.user + cpu.system) / 1e6,
    };
  }

  async closeAll() {
    for (const c of this.clients) c.close();
    const n = this.clients.length;
    this.clients = [];
    return { closed: n };
  }
}

const gen = new Generator();
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const handlers = {
  connect: (c) => gen.connect(c),
  join: (c) => gen.join(c),
  fanout: (c) => gen.fanout(c),
  history: (c) => gen.history(c),
  close: () => gen.closeAll(),
  ping: async () => ({
    clients: gen.clients.length,
    other_events: gen.otherEvents,
    presence_events: gen.presenceEvents,
    // Sockets the server closed (a ping timeout, a slow-consumer cut) since they connected.
    dropped: gen.clients.filter((c) => c.closed).length,
  }),
  exit: async () => {
    await gen.closeAll();
    setTimeout(() => process.exit(0), 50);
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let cmd;
    try {
      cmd = JSON.parse(line);
      const handler = handlers[cmd.cmd];
      if (!handler) fail(`unknown command ${cmd.cmd}`);
      out({ ok: true, ...(await handler(cmd)) });
    } catch (err) {
      out({ ok: false, error: String(err?.message ?? err) });
    }
  });
});
rl.on("close", () => {
  // The runner went away (or finished writing): finish the current command, then leave.
  chain.then(() => {
    gen.closeAll();
    setTimeout(() => process.exit(0), 50);
  });
});
// Never outlive the runner by much, whatever happens to it.
const lifetime = Number(process.env.LOADGEN_MAX_SECONDS ?? 1800);
setTimeout(() => {
  process.stderr.write("loadgen: lifetime exceeded, exiting\n");
  process.exit(3);
}, lifetime * 1000).unref();
