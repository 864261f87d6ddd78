// The chat client: signs in, keeps the connection, and builds the views. Protocol:
// README.md, "Protocol". Each view or concern is a module of its own: rooms.js (join,
// history, switching), live.js (server events), compose.js (sending, editing), reads.js
// (receipts), timeline.js and message.js (messages), edit.js (editing in place), replies.js
// (reply bar, thread panel), pins.js, mentions.js, header.js (room header), sentiment.js
// (the composer's bullish/bearish toggle), and the conversation modules.
import { Blocks } from "./blocks.js";
import { initComposer } from "./compose.js";
import { Connection } from "./connection.js";
import { Conversations } from "./conversations.js";
import { $ } from "./dom.js";
import { RoomHeader } from "./header.js";
import { LIVE } from "./live.js";
import { MembersPanel } from "./members.js";
import { MentionBox } from "./mentions.js";
import { PinsPanel } from "./pins.js";
import { beforeExpiry } from "./refresh.js";
import { ReplyBar, ThreadPanel } from "./replies.js";
import { SentimentToggle } from "./sentiment.js";
import { dropRoom, forgetRooms, joinRoom, leaveActive, reloadHistory, removeMember, roomState, savedRooms, selectRoom } from "./rooms.js";
import { Sidebar } from "./sidebar.js";
import { app, reportAck } from "./state.js";
import { banner, clearBanner, setState, toast } from "./status.js";
import * as tokens from "./token.js";
import { TypingSender } from "./typing.js";

app.typing = new TypingSender((room, on) => app.conn?.volatile("typing", { room, typing: on }));
app.sidebar = new Sidebar({ join: (name) => joinRoom(name, { select: true }), select: selectRoom });
app.blocks = new Blocks(
  (event, payload) => app.conn.request(event, payload),
  (unblocked) => {
    app.blocks.render(unblock);
    for (const [name, view] of app.views) {
      const room = app.rooms.get(name);
      // The server left an unblocked user's messages out of history: fetch it again.
      if (unblocked && room.historyLoaded) reloadHistory(room);
      else view.rerender();
    }
  },
);
app.members = new MembersPanel(() => app.me, {
  list: (room) => app.conversations.listMembers(room),
  add: (room, user) => app.conversations.addMember(room, user),
  remove: (room, user) => removeMember(room, user),
});
app.conversations = new Conversations({
  app,
  sidebar: app.sidebar,
  members: app.members,
  roomState: (name) => roomState(name),
  dropRoom: (name) => dropRoom(name),
  joinRoom: (name, options) => joinRoom(name, options),
});
app.header = new RoomHeader();
app.pins = new PinsPanel();
app.reply = new ReplyBar();
app.thread = new ThreadPanel();
app.sentiment = new SentimentToggle();
app.mentions = new MentionBox($("text")); // before the composer: it takes Enter while listing
initComposer();
$("leave").addEventListener("click", leaveActive);

function unblock(user) {
  app.blocks.unblock(user).catch((error) => reportAck("unblock", error));
}

// ---- sign-in --------------------------------------------------------------------------

function signIn(token) {
  const claims = tokens.claims(token);
  if (!claims || typeof claims.sub !== "string") {
    $("signin-error").textContent = "invalid_token: that is not a JWT";
    return;
  }
  app.me = {
    sub: claims.sub,
    name: typeof claims.name === "string" && claims.name ? claims.name : claims.sub,
    // Only to offer what the server allows (pinning in public rooms is `admin`'s); it checks.
    roles: Array.isArray(claims.roles) ? claims.roles : [],
  };
  tokens.save(token);
  $("signin-error").textContent = "";
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("sign-out").hidden = false;
  $("me").textContent = app.me.name;
  $("join-room").focus(); // the next thing to do, and where keyboard users land
  app.conn = new Connection(token, {
    connect: onConnect,
    sessionEnd: onSessionEnd,
    refused: (error) => signOut(`${error.code}: ${error.message}`),
    events: LIVE,
  });
  app.cancelRefresh = beforeExpiry(claims.exp, renewToken);
}

/** Before the token expires: a new one through the dev endpoint, else ask the user. */
async function renewToken() {
  const conn = app.conn;
  if (!conn) return;
  if (!app.devSignIn) {
    banner("Your token is about to expire: sign out and in again with a new one to stay connected.");
    return;
  }
  try {
    const token = await tokens.devToken(app.me.sub, app.me.name);
    await conn.request("refresh", { token });
    conn.socket.auth.token = token; // reconnects (and recoveries) use the new token too
    tokens.save(token);
    app.cancelRefresh = beforeExpiry(tokens.claims(token)?.exp, renewToken);
  } catch (error) {
    toast(`refresh: ${error.message}`);
  }
}

function signOut(reason = "") {
  app.cancelRefresh();
  app.typing.stop();
  app.conn?.close();
  app.conn = null;
  tokens.forget();
  forgetRooms();
  for (const view of app.views.values()) view.element.remove();
  app.rooms.clear();
  app.views.clear();
  app.active = null;
  app.sidebar.clear();
  app.blocks.clear();
  app.members.close();
  app.thread.close();
  app.reply.cancel({ focus: false });
  app.header.render();
  setState("signed-out");
  $("chat").hidden = true;
  $("signin").hidden = false;
  $("sign-out").hidden = true;
  $("me").textContent = "";
  $("signin-error").textContent = reason;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});

$("dev-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    signIn(await tokens.devToken($("dev-sub").value.trim(), $("dev-name").value.trim()));
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("sign-out").addEventListener("click", () => signOut());

// ---- connection -----------------------------------------------------------------------

function onConnect(recovered) {
  if (recovered) {
    // The server kept our rooms and replays what we missed: nothing to rejoin.
    banner("Reconnected: the session was recovered, nothing was missed.");
    return;
  }
  clearBanner();
  app.blocks.load().catch((error) => reportAck("blocked", error));
  const joined = [...app.rooms.values()].filter((room) => room.joined).map((room) => room.name);
  const names = app.rooms.size ? joined : savedRooms();
  // A fresh session has no rooms: join them again, catching up from the newest position seen.
  for (const name of names) joinRoom(name, { select: app.active === null || app.active === name });
  app.conversations.load();
}

function onSessionEnd(data) {
  const text = `Session ended: ${data.message} (${data.code})`;
  if (data.reconnect) {
    banner(`${text}. Reconnecting…`);
  } else {
    signOut(text);
    banner(text);
  }
}

// ---- start ----------------------------------------------------------------------------

tokens
  .appConfig()
  .then((config) => {
    app.devSignIn = Boolean(config.dev_sign_in);
    $("dev-form").hidden = !app.devSignIn;
  })
  .catch(() => toast("could not read /app/config.json"));

const saved = tokens.saved();
if (saved) signIn(saved);
