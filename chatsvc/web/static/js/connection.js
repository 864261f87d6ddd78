// One Socket.IO connection with connection state recovery, and acked requests that give up
// or retry by themselves. Everything else (rooms, views) listens to it.
import { setState } from "./status.js";

const ACK_TIMEOUT_MS = 10000;
const RETRIES = 2;
const RATE_RETRIES = 4; // rate_limited: the server did nothing, so wait and ask again
const RATE_WAIT_MS = 400; // doubled per attempt: 0.4 + 0.8 + 1.6 + 3.2 s at most

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** An ack's {ok: false, error: {code, message, ...}}, or a timeout (code "timeout"). */
export class AckError extends Error {
  constructor(code, message, extra = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
    // e.g. slow_mode's retry_after_ms (issue 25)
    this.retry_after_ms = typeof extra.retry_after_ms === "number" ? extra.retry_after_ms : undefined;
  }
}

export class Connection {
  /**
   * handlers: {connect(recovered), sessionEnd(data), refused(error), event name -> fn}.
   * recover: true opts into connection state recovery (README, Protocol): after a drop
   * socket.io-client comes back with the same rooms and every missed message.
   */
  constructor(token, handlers) {
    this.handlers = handlers;
    this.ended = false;
    setState("connecting");
    this.socket = window.io({ auth: { token, recover: true } });
    const socket = this.socket;
    socket.on("connect", () => {
      setState(socket.recovered ? "recovered" : "connected");
      handlers.connect(socket.recovered);
    });
    socket.on("disconnect", (reason) => {
      // "io client disconnect": we signed out; "io server disconnect": the server ended the
      // session for good (session_end said why). Anything else: socket.io-client retries.
      if (reason === "io client disconnect") setState("signed-out");
      else if (reason === "io server disconnect") setState("ended");
      else setState("reconnecting", reason);
    });
    socket.io.on("reconnect_attempt", (attempt) => setState("reconnecting", `attempt ${attempt}`));
    socket.on("connect_error", (error) => {
      const data = error.data;
      if (data && data.code === "shutting_down") {
        // A draining replica refuses new sessions: try again (the proxy picks another).
        setState("reconnecting", "server restarting");
        setTimeout(() => socket.connect(), 1000);
      } else if (data && data.code) {
        // Refused (bad/expired token, banned): socket.io-client does not retry these.
        setState("ended");
        handlers.refused(data);
      } else if (!socket.active) {
        setState("ended");
        handlers.refused({ code: "connect_failed", message: error.message });
      } else {
        setState("reconnecting", error.message);
      }
    });
    socket.on("session_end", (data) => {
      this.ended = !data.reconnect;
      handlers.sessionEnd(data);
    });
    for (const [event, fn] of Object.entries(handlers.events)) socket.on(event, fn);
  }

  get connected() {
    return this.socket.connected;
  }

  /**
   * Emit `event` and resolve with the ack (its ok: true body), or reject with AckError.
   * A timeout is retried with the same payload: every event is safe to repeat (a message
   * carries its client_msg_id, so the server answers a repeat with the original), and so
   * is `rate_limited`, after a wait that doubles each time (bounded).
   */
  async request(event, payload, { retries = RETRIES } = {}) {
    for (let attempt = 0, limited = 0; ; attempt++) {
      try {
        const ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
        if (ack && ack.ok) return ack;
        const error = (ack && ack.error) || { code: "internal", message: "malformed ack" };
        // A burst (sign-in loads the list, joins, history) may outrun the per-connection
        // rate limit; the event was refused before it did anything, so waiting is safe.
        if (error.code === "rate_limited" && limited < RATE_RETRIES) {
          await sleep(RATE_WAIT_MS * 2 ** limited++);
          attempt--;
          continue;
        }
        throw new AckError(error.code, error.message, error);
      } catch (error) {
        if (error instanceof AckError || attempt >= retries) {
          throw error instanceof AckError ? error : new AckError("timeout", `no answer to ${event}`);
        }
      }
    }
  }

  /** Fire and forget (typing): dropped while disconnected instead of queued. */
  volatile(event, payload) {
    this.socket.volatile.emit(event, payload, () => {});
  }

  close() {
    this.socket.disconnect();
  }
}
