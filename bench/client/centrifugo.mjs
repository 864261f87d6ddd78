// The load generator's Centrifugo client: Centrifugo's JSON protocol (client protocol v2)
// over a bare websocket at /connection/websocket, with the same surface as the Socket.IO
// client in loadgen.mjs (open, joinRoom, sendChat, close), so every scenario drives both.
//
// Wire, one JSON object per line (a frame may carry several, newline-separated):
//   -> {"id":1,"connect":{"token":JWT,"name":"bench"}}   <- {"id":1,"connect":{"client":...}}
//   -> {"id":2,"subscribe":{"channel":room}}               <- {"id":2,"subscribe":{}}
//   -> {"id":3,"publish":{"channel":room,"data":{...}}}    <- {"id":3,"publish":{}}
//   <- {"push":{"channel":room,"pub":{"data":{...}}}}      a publication (also to its sender)
//   <- {}  (ping)                                           -> {}  (pong)
// Errors come back as {"id":N,"error":{"code":...,"message":...}}.
import { dial } from "./dial.mjs";

export class CentrifugoClient {
  constructor(gen, index) {
    this.gen = gen;
    this.index = index;
    this.ws = null;
    this.nextId = 1;
    this.replies = new Map();
    this.connected = false;
    this.closed = false;
  }

  /** Connect and authenticate with the connection token in `auth.token`. */
  open(url, auth, localAddress, timeoutMs) {
    return new Promise((resolve, reject) => {
      const target = `${url.replace(/^http/, "ws")}/connection/websocket`;
      const { ws, settle } = dial(this, target, localAddress, timeoutMs, {
        resolve,
        reject,
        pending: this.replies,
        closedMessage: (code, reason) => `closed during connect (${code} ${reason})`,
      });
      ws.on("open", () => {
        this.call({ connect: { token: auth.token ?? "", name: "bench" } }, (reply) => {
          if (reply?.connect) {
            this.connected = true;
            settle(null);
          } else {
            settle(new Error(`connect refused ${JSON.stringify(reply?.error ?? reply)}`));
          }
        });
      });
      ws.on("message", (raw, isBinary) => {
        if (isBinary) return;
        const text = raw.toString();
        let start = 0;
        while (start < text.length) {
          let end = text.indexOf("\n", start);
          if (end < 0) end = text.length;
          if (end > start) this.onLine(text.slice(start, end));
          start = end + 1;
        }
      });
    });
  }

  onLine(line) {
    if (line === "{}") {
      this.ws.send("{}"); // pong
      return;
    }
    if (line.startsWith('{"push"')) {
      // Only publications carry the timestamp mark; anything else (join/leave) is counted.
      if (line.includes('"pub"')) this.gen.onDelivery(this, line);
      else {
        this.gen.otherEvents++;
        if (line.includes('"join"') || line.includes('"leave"')) this.gen.presenceEvents++;
      }
      return;
    }
    const reply = JSON.parse(line);
    const cb = this.replies.get(reply.id);
    if (cb) {
      this.replies.delete(reply.id);
      cb(reply);
    }
  }

  /** Send a command; `cb(replyObjectOrNull)`. */
  call(command, cb) {
    const id = this.nextId++;
    this.replies.set(id, cb);
    this.ws.send(JSON.stringify({ id, ...command }));
  }

  /** Subscribe to the channel named like the room; resolves `{ok, reply}`. */
  joinRoom(room, _since, timeoutMs) {
    return new Promise((resolve) => {
      if (!this.connected) {
        resolve({ ok: false, reply: "not connected" });
        return;
      }
      const timer = setTimeout(() => resolve({ ok: false, reply: "timed out" }), timeoutMs);
      this.call({ subscribe: { channel: room } }, (reply) => {
        clearTimeout(timer);
        resolve({ ok: Boolean(reply?.subscribe), reply });
      });
    });
  }

  /**
   * Publish a chat message; `cb(ok, errorText)`. The data has the shape (and about the size)
   * of the message chatsvc and the Node peer deliver, which their servers build but
   * Centrifugo relays as it gets it.
   */
  sendChat(room, text, clientMsgId, cb) {
    if (!this.connected) {
      cb(false, "not connected");
      return;
    }
    const now = Date.now();
    const data = {
      id: `${now.toString(36)}${clientMsgId}`.padEnd(26, "0"),
      room,
      user: { id: `u${this.index}`, name: `User ${this.index}` },
      text,
      client_msg_id: clientMsgId,
      created_at: new Date(now).toISOString(),
    };
    this.call({ publish: { channel: room, data } }, (reply) => {
      if (reply?.publish) cb(true, null);
      else cb(false, JSON.stringify(reply?.error ?? reply));
    });
  }

  close() {
    if (this.ws && !this.closed) this.ws.terminate();
  }
}
