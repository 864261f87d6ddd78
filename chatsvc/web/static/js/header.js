// The room header: title, presence count, slow or surge mode, sentiment, pins, members,
// leave; and the typing line under the timeline. Slow/surge mode and sentiment are issue 25's
// (`room_mode {room, slow_mode_seconds, reason}`, `sentiment`, `room_info`): each element has
// an id and a data- state a test can read, and shows nothing until the server says something.
import { AckError } from "./connection.js";
import { $ } from "./dom.js";
import { activeRoom, app } from "./state.js";
import { ackError } from "./status.js";
import { typingText } from "./typing.js";

export class RoomHeader {
  constructor() {
    this.countdown = null;
    this.unsupported = null; // the connection whose server has no room_info
    setInterval(() => this.renderTyping(), 1000);
  }

  render() {
    const room = activeRoom();
    $("room-title").textContent = room ? room.title : "Join a room to start";
    $("room-online").textContent = room ? `${room.online} online` : "";
    $("leave").hidden = !room || room.kind === "direct"; // a DM stays listed: there is no leaving it
    app.members.setRoom(room);
    app.pins.setRoom(room);
    app.sentiment.setRoom(room);
    $("text").disabled = !room;
    $("send").disabled = !room;
    if (!room) $("room-activity").textContent = "";
    this.renderMode(room);
    this.renderSentiment(room);
    this.renderTyping();
  }

  renderMode(room) {
    const el = $("room-mode");
    const slow = room?.slowMode;
    el.hidden = !slow;
    el.dataset.reason = slow?.reason || "";
    if (!slow) {
      el.textContent = "";
      return;
    }
    const surge = slow.reason === "surge";
    el.textContent = `${surge ? "Surge: slow mode" : "Slow mode"} · one message per ${slow.seconds} s`;
    el.title = surge
      ? "The room is busier than usual: the server slowed it down by itself until it calms down"
      : "A moderator slowed this room down";
  }

  renderSentiment(room) {
    const el = $("room-sentiment");
    const s = room?.sentiment;
    el.hidden = !s;
    if (!s) {
      el.textContent = "";
      return;
    }
    const total = s.bullish + s.bearish;
    const share = total ? Math.round((100 * s.bullish) / total) : 50;
    el.dataset.bullish = String(s.bullish);
    el.dataset.bearish = String(s.bearish);
    const window = s.window === "hour" ? " (1 h)" : s.window === "day" ? " (24 h)" : "";
    el.textContent = `▲ ${s.bullish} bullish · ▼ ${s.bearish} bearish${window}`;
    el.setAttribute("aria-label", `Sentiment${window}: ${s.bullish} bullish, ${s.bearish} bearish, ${share}% bullish`);
  }

  /** Ask for `room_info` (slow mode, sentiment, online) after a join; live `room_mode` and
   * `sentiment` events keep it current. A server without it (before issue 25's modes)
   * answers invalid_payload: then it is not asked again until the next sign-in. */
  async loadInfo(room) {
    const conn = app.conn;
    if (!conn || this.unsupported === conn) return;
    try {
      const ack = await conn.request("room_info", { room: room.name });
      room.info(ack);
      if (room.name === app.active) this.render();
    } catch (error) {
      if (!(error instanceof AckError)) throw error;
      if (error.code === "invalid_payload") this.unsupported = conn;
      else ackError(`room_info ${room.name}`, error);
    }
  }

  renderTyping() {
    const room = activeRoom();
    $("typing").textContent = room ? typingText(room) : "";
  }

  /** A `slow_mode` refusal: say how long to wait, counting down in the composer's hint. */
  slowRefused(room, error) {
    const wait = Number(error.retry_after_ms) || 0;
    room.slowUntil = Date.now() + wait;
    clearInterval(this.countdown);
    const tick = () => {
      const left = Math.ceil((room.slowUntil - Date.now()) / 1000);
      const hint = $("composer-hint");
      if (left <= 0 || app.active !== room.name) {
        hint.textContent = "";
        clearInterval(this.countdown);
        return;
      }
      hint.textContent = `Slow mode: you can post again in ${left} s`;
    };
    tick();
    this.countdown = setInterval(tick, 1000);
  }
}
