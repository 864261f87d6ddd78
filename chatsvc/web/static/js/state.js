// The client's shared state: the connection, the signed-in user, the rooms and their views,
// and the panels main.js builds. Modules read it when they act, never at import time, so
// they can call each other without an import order.
import { AckError } from "./connection.js";
import { ackError } from "./status.js";

export const app = {
  conn: null,
  me: null, // {sub, name, roles}
  rooms: new Map(), // name -> Room
  views: new Map(), // name -> Timeline
  active: null,
  devSignIn: false, // the server offers POST /dev/token (development only)
  cancelRefresh: () => {},
  // Built by main.js: Sidebar, Blocks, MembersPanel, Conversations, TypingSender, and the
  // views of issue 27 (thread panel, pins panel, room header, mention autocomplete).
  sidebar: null,
  blocks: null,
  members: null,
  conversations: null,
  typing: null,
  thread: null,
  pins: null,
  header: null,
  mentions: null,
  reply: null,
  sentiment: null, // the composer's bullish/bearish toggle
};

/** Show an ack error by its code; anything else is a bug and is thrown again. */
export function reportAck(what, error) {
  if (!(error instanceof AckError)) throw error;
  ackError(what, error);
}

/** An acked request that shows its error and answers null instead of throwing. */
export async function request(event, payload, what = event) {
  if (!app.conn) return null;
  try {
    return await app.conn.request(event, payload);
  } catch (error) {
    reportAck(what, error);
    return null;
  }
}

export const activeRoom = () => (app.active ? app.rooms.get(app.active) : null);
