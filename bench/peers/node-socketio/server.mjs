// Reference peer for the chatsvc benchmarks: the smallest Socket.IO v4 server on Node.js
// that speaks the same events as chatsvc (join with ack, message with ack, delivery of
// `message` to the rest of the room), with socket.io's defaults and no storage or auth.
import http from "node:http";
import { Server } from "socket.io";

const host = process.env.PEER_HOST ?? "127.0.0.1";
const port = Number(process.env.PEER_PORT ?? 3000);
if (!/^127\./.test(host)) throw new Error("the bench peer listens on 127.0.0.0/8 only");

// Registered before socket.io attaches, so engine.io hands it every non-/socket.io/ request.
const httpServer = http.createServer((req, res) => {
  const healthy = req.url === "/healthz";
  res.writeHead(healthy ? 200 : 404, { "content-type": "application/json" });
  res.end(healthy ? '{"status":"ok"}' : '{"error":"not found"}');
});
const io = new Server(httpServer, { serveClient: false, cors: { origin: false } });
let counter = 0;
// PEER_PRESENCE=1 (bench/run.py's join storm): announce each join and leave to the rest of
// the room, as a socket.io chat does, so the peer pays for presence as chatsvc does.
const presence = process.env.PEER_PRESENCE === "1";
const online = (room) => io.sockets.adapter.rooms.get(room)?.size ?? 0;

const isRoom = (room) => typeof room === "string" && /^[A-Za-z0-9_.:-]{1,64}$/.test(room);

io.on("connection", (socket) => {
  const user = { id: socket.id, name: socket.id };
  socket.on("join", (payload, ack) => {
    if (typeof ack !== "function") return;
    const room = payload?.room;
    if (!isRoom(room)) return ack({ ok: false, error: { code: "invalid_payload", message: "room" } });
    const fresh = !socket.rooms.has(room);
    socket.join(room);
    if (presence && fresh) socket.to(room).emit("presence", { room, user, action: "join", online: online(room) });
    ack({ ok: true, room, unread: 0, online: io.sockets.adapter.rooms.get(room)?.size ?? 1 });
  });
  if (presence) {
    socket.on("disconnecting", () => {
      for (const room of socket.rooms) {
        if (room === socket.id) continue;
        socket.to(room).emit("presence", { room, user, action: "leave", online: online(room) - 1 });
      }
    });
  }
  socket.on("message", (payload, ack) => {
    if (typeof ack !== "function") return;
    const room = payload?.room;
    const text = payload?.text;
    if (!isRoom(room) || !socket.rooms.has(room) || typeof text !== "string" || !text.trim()) {
      return ack({ ok: false, error: { code: "invalid_payload", message: "room/text" } });
    }
    const now = Date.now();
    const message = {
      id: `${now.toString(36)}${(counter++).toString(36).padStart(8, "0")}`,
      room,
      user,
      text,
      client_msg_id: typeof payload.client_msg_id === "string" ? payload.client_msg_id : null,
      created_at: new Date(now).toISOString(),
    };
    socket.to(room).emit("message", message);
    ack({ ok: true, message, duplicate: false });
  });
});

httpServer.listen(port, host, () => process.stdout.write(`peer listening on ${host}:${port}\n`));
const stop = () => {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
