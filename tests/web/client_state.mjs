// The web client's room state (chatsvc/web/static/js/room.js) without a browser: it has no
// DOM and no imports, so node runs it as it is (the test hands in a copy named .mjs: a .js
// file outside a "type": "module" package is only taken as a module by newer node). Run by
// tests/web/test_client_state.py with the copy's URL as the argument; prints "ok".
import assert from "node:assert/strict";

const { Room, sentimentOf, unquoted, withReaction } = await import(process.argv[2]);

const message = (id, extra = {}) => ({ id, room: "stock:X", user: { id: "bob", name: "Bob" }, text: `m ${id}`, ...extra });

// Sentiment: the hour's counts, else the day's, else flat counts; anything else is nothing.
assert.deepEqual(sentimentOf({ hour: { bullish: 3, bearish: 1 }, day: { bullish: 9, bearish: 9 } }), { bullish: 3, bearish: 1, window: "hour" });
assert.deepEqual(sentimentOf({ day: { bullish: 9, bearish: 2 } }), { bullish: 9, bearish: 2, window: "day" });
assert.deepEqual(sentimentOf({ bullish: 2, bearish: 5 }), { bullish: 2, bearish: 5, window: null });
for (const bad of [null, {}, "bullish", { hour: { bullish: "3", bearish: 1 } }, { bullish: 1 }]) assert.equal(sentimentOf(bad), null);

// The header's state from join answers, room_mode, sentiment and room_info payloads.
const room = new Room("stock:X");
room.info({ ok: true, room: "stock:X", online: 4, unread: 0 }); // a join answer of today's server
assert.equal(room.online, 4);
assert.equal(room.slowMode, null);
assert.equal(room.sentiment, null);
room.info({ room: "stock:X", slow_mode_seconds: 30, reason: "surge" });
assert.deepEqual(room.slowMode, { seconds: 30, reason: "surge" });
room.info({ room: "stock:X", hour: { bullish: 7, bearish: 2 } }); // a sentiment event
assert.deepEqual(room.sentiment, { bullish: 7, bearish: 2, window: "hour" });
assert.deepEqual(room.slowMode, { seconds: 30, reason: "surge" }); // kept: not in that payload
room.info({ ok: true, room: "stock:X", online: 9, slow_mode: { seconds: 10, reason: null }, sentiment: { day: { bullish: 1, bearish: 1 } } });
assert.deepEqual(room.slowMode, { seconds: 10, reason: null });
assert.equal(room.online, 9);
assert.deepEqual(room.sentiment, { bullish: 1, bearish: 1, window: "day" });
room.info({ room: "stock:X", slow_mode_seconds: 0, reason: "surge" }); // surge over
assert.equal(room.slowMode, null);

// Reactions: counts set by the newest event, own ones by the reader's own adds and removes.
const m1 = message("01A");
const one = withReaction(m1, "👍", 1, "add");
assert.deepEqual([one.reactions, one.own_reactions], [{ "👍": 1 }, ["👍"]]);
const two = withReaction(one, "👍", 2, null); // someone else's
assert.deepEqual([two.reactions, two.own_reactions], [{ "👍": 2 }, ["👍"]]);
const back = withReaction(two, "👍", 1, "remove");
assert.deepEqual([back.reactions, back.own_reactions], [{ "👍": 1 }, []]);
assert.deepEqual(withReaction(back, "👍", 0, null).reactions, {});
assert.equal(withReaction({ ...m1, deleted: true }, "👍", 1, null), null);

// Edits and live copies carry no reactions or reply counts: the known ones are kept; a
// delete drops the reactions but keeps the reply count (its replies stay readable).
const r = new Room("stock:X");
r.put(message("01B", { reactions: { "🚀": 2 }, own_reactions: ["🚀"], reply_count: 1, last_reply_at: "t" }));
const edited = r.edited(message("01B", { text: "edited", edited_at: "t2" }));
assert.deepEqual([edited.text, edited.reactions, edited.reply_count], ["edited", { "🚀": 2 }, 1]);
r.put(message("01B")); // a late live copy of the original does not undo the edit
assert.equal(r.messages.get("01B").text, "edited");
const deleted = r.markDeleted("01B");
assert.deepEqual([deleted.deleted, deleted.reactions, deleted.reply_count], [true, undefined, 1]);
assert.equal(r.reacted("01B", "🚀", 3, null), null); // a deleted message shows none
assert.equal(r.annotate("01C", { reply_count: 1 }), null); // unknown: nothing to update

// A deleted parent's text leaves its replies' quotes (each reply changed once); others stay.
const q = new Room("stock:X");
q.put(message("02A"));
q.put(message("02B", { reply_to: { id: "02A", user: { id: "bob" }, preview: "m 02A" } }));
q.put(message("02C", { reply_to: { id: "02Z", user: { id: "bob" }, preview: "other" } }));
q.markDeleted("02A");
assert.deepEqual(q.unquote("02A").map((m) => [m.id, m.reply_to.preview, m.reply_to.deleted]), [["02B", "", true]]);
assert.deepEqual(q.messages.get("02B").reply_to, { id: "02A", user: { id: "bob" }, preview: "", deleted: true });
assert.equal(q.messages.get("02C").reply_to.preview, "other");
assert.deepEqual(q.unquote("02A"), []); // already blank: nothing to render again

// Mention candidates: everyone seen in the room.
r.put(message("01D", { user: { id: "carol", name: "Carol" } }));
r.seeUser({ id: "dave" });
assert.deepEqual([...r.people], [["bob", "Bob"], ["carol", "Carol"], ["dave", "dave"]]);

assert.deepEqual(unquoted({ id: "x", preview: "y" }), { id: "x", preview: "", deleted: true });

console.log("ok");
