// One message as a list item, for the room's timeline and the thread panel: author (with
// its menu), time, the quote of the message it replies to, the text with mentions marked,
// reactions (own ones pressed), the reply count, its bullish/bearish mark, and its actions.
// User text only ever becomes text nodes.
import { clock, h } from "./dom.js";
import { sentimentMark } from "./sentiment.js";

/** The picker's choices; any other emoji someone used shows as a chip and can be joined. */
export const PICKER = ["👍", "❤️", "😂", "😮", "🚀", "📈", "📉", "👀"];

let openPicker = null; // one reaction picker at a time: {menu, close}

// A click anywhere else closes the open picker.
document.addEventListener("click", (event) => {
  if (openPicker && !openPicker.menu.parentNode.contains(event.target)) openPicker.close(false);
});

/**
 * ctx: {room, me, actions, inThread, startEdit(message)}; actions as in actions.js. With
 * startEdit, own messages offer Edit, and Delete shows where actions.mayDelete allows it
 * (own messages, and others' for moderators): the timeline and the thread panel alike.
 */
export function messageElement(message, ctx) {
  const { room, me, actions } = ctx;
  const mine = message.user.id === me.sub;
  const deleted = Boolean(message.deleted);
  // A blocked author's messages stay out of sight (the server stops sending new ones).
  const blocked = !mine && actions.isBlocked(message.user.id);
  const mentionsMe = !deleted && Array.isArray(message.mentions) && message.mentions.includes(me.sub);
  const pinned = !deleted && room.pinned.has(message.id);
  const classes = [
    "msg",
    mine && "mine",
    deleted && "deleted",
    blocked && "blocked",
    mentionsMe && "mentions-me",
    pinned && "pinned",
    message.kind && `kind-${message.kind}`,
  ];
  return h(
    "li",
    { class: classes.filter(Boolean).join(" "), dataset: { id: message.id, user: message.user.id }, hidden: blocked },
    h(
      "div",
      { class: "meta" },
      mine ? h("span", { class: "author", text: message.user.name || message.user.id }) : authorMenu(message.user, actions),
      h("time", { datetime: message.created_at, title: message.created_at, text: clock(message.created_at) }),
      message.edited_at && !deleted ? h("span", { class: "edited", text: "edited" }) : null,
      deleted ? null : sentimentMark(message.sentiment),
      pinned ? h("span", { class: "pin-mark", text: "📌 pinned" }) : null,
      mentionsMe ? h("span", { class: "mention-mark", text: "mentions you" }) : null,
    ),
    message.reply_to ? quote(message, ctx) : null,
    h("p", { class: "text" }, deleted ? "message deleted" : textWithMentions(message)),
    deleted ? null : reactionRow(message, ctx),
    !ctx.inThread && message.reply_count > 0
      ? h("button", {
          type: "button",
          class: "thread-link",
          dataset: { key: "thread" },
          text: message.reply_count === 1 ? "1 reply" : `${message.reply_count} replies`,
          "aria-label": `${message.reply_count === 1 ? "1 reply" : `${message.reply_count} replies`}: open the thread`,
          onclick: () => actions.thread(room, message),
        })
      : null,
    deleted ? null : actionRow(message, ctx, mine),
    h("p", { class: "receipts" }),
  );
}

/** "↪ Bob: the first words…": the parent as it was when replied to; opens its thread. */
function quote(message, { room, actions, inThread }) {
  const parent = message.reply_to;
  const who = parent.user?.name || parent.user?.id || "?";
  // A deleted parent's text is gone from its replies' quotes too (README, "Edits and deletes").
  const said = parent.deleted ? "message deleted" : parent.preview || "";
  const body = [h("span", { class: "quote-author", text: who }), h("span", { class: "quote-text", text: said })];
  if (inThread) return h("blockquote", { class: "quote", dataset: { parent: parent.id } }, ...body);
  return h(
    "button",
    {
      type: "button",
      class: "quote",
      dataset: { parent: parent.id, key: "quote" },
      "aria-label": `In reply to ${who}: ${said}. Open the thread`,
      onclick: () => actions.thread(room, { id: parent.id }),
    },
    ...body,
  );
}

/** The text with each `@user` the message mentions marked (still text nodes only). */
export function textWithMentions(message) {
  const text = message.text;
  const ids = Array.isArray(message.mentions) ? message.mentions : [];
  if (!ids.length) return text;
  const parts = [];
  let rest = text;
  for (;;) {
    let at = -1;
    let found = null;
    for (const id of ids) {
      const i = rest.indexOf(`@${id}`);
      const end = i + id.length + 1;
      // A whole token: "@bob" marks in "@bob," but not in "@bobby".
      if (i >= 0 && (at < 0 || i < at) && !/[\w.:-]/.test(rest.charAt(end) || " ")) [at, found] = [i, id];
    }
    if (found === null) break;
    if (at > 0) parts.push(rest.slice(0, at));
    parts.push(h("span", { class: "mention", text: `@${found}` }));
    rest = rest.slice(at + found.length + 1);
  }
  if (rest) parts.push(rest);
  return parts;
}

function reactionRow(message, { room, actions }) {
  const counts = message.reactions || {};
  const own = new Set(message.own_reactions || []);
  const chips = Object.entries(counts)
    .filter(([, count]) => count > 0)
    .map(([emoji, count]) => {
      const pressed = own.has(emoji);
      return h("button", {
        type: "button",
        class: "reaction",
        text: `${emoji} ${count}`,
        dataset: { emoji, key: `reaction ${emoji}` },
        "aria-pressed": String(pressed),
        "aria-label": `${emoji} ${count}${pressed ? ", yours: press to take it back" : ": press to add yours"}`,
        onclick: () => (pressed ? actions.unreact(room, message.id, emoji) : actions.react(room, message.id, emoji)),
      });
    });
  return chips.length ? h("div", { class: "reactions", role: "group", "aria-label": "Reactions" }, ...chips) : null;
}

function actionRow(message, ctx, mine) {
  const { room, actions } = ctx;
  const buttons = [];
  if (!ctx.inThread) {
    buttons.push(h("button", { type: "button", text: "Reply", dataset: { key: "reply" }, onclick: () => actions.reply(room, message) }));
  }
  buttons.push(picker(message, ctx));
  if (actions.mayPin(room)) {
    const pinned = room.pinned.has(message.id);
    buttons.push(
      h("button", {
        type: "button",
        text: pinned ? "Unpin" : "Pin",
        dataset: { key: "pin" },
        onclick: () => (pinned ? actions.unpin(room, message.id) : actions.pin(room, message.id)),
      }),
    );
  }
  if (mine && ctx.startEdit) {
    buttons.push(h("button", { type: "button", text: "Edit", dataset: { key: "edit" }, onclick: () => ctx.startEdit(message) }));
  }
  if (ctx.startEdit && actions.mayDelete(room, message)) {
    const who = message.user.name || message.user.id;
    buttons.push(
      h("button", {
        type: "button",
        text: "Delete",
        dataset: { key: "delete" },
        // A moderator's Delete on someone else's message says whose it removes.
        "aria-label": mine ? null : `Delete ${who}'s message`,
        onclick: () => actions.remove(room, message.id),
      }),
    );
  }
  return h("div", { class: "actions" }, ...buttons);
}

/** "React": a small menu of emoji; Escape closes it and gives the focus back. */
function picker(message, { room, actions }) {
  const own = new Set(message.own_reactions || []);
  const menu = h("span", { class: "picker", role: "group", "aria-label": "Pick a reaction", hidden: true });
  const button = h("button", {
    type: "button",
    text: "React",
    class: "react-button",
    dataset: { key: "react" },
    "aria-haspopup": "true",
    "aria-expanded": "false",
    onclick: () => (menu.hidden ? open() : close(true)),
  });
  const close = (focus) => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (openPicker?.menu === menu) openPicker = null;
    if (focus) button.focus();
  };
  const open = () => {
    if (openPicker) openPicker.close(false);
    menu.replaceChildren(
      ...PICKER.map((emoji) =>
        h("button", {
          type: "button",
          class: "pick",
          text: emoji,
          "aria-label": own.has(emoji) ? `${emoji} (yours: take it back)` : `React ${emoji}`,
          "aria-pressed": String(own.has(emoji)),
          onclick: () => {
            close(true);
            return own.has(emoji) ? actions.unreact(room, message.id, emoji) : actions.react(room, message.id, emoji);
          },
        }),
      ),
    );
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    openPicker = { menu, close };
    menu.firstChild.focus();
  };
  menu.addEventListener("keydown", (event) => {
    const picks = [...menu.children];
    const at = picks.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      close(true);
    } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && at >= 0) {
      event.preventDefault();
      picks[(at + (event.key === "ArrowRight" ? 1 : picks.length - 1)) % picks.length].focus();
    }
  });
  return h("span", { class: "picker-wrap" }, button, menu);
}

/** Someone else's name: a button opening that author's menu (block / unblock, message). */
function authorMenu(user, actions) {
  const name = user.name || user.id;
  const menu = h("span", { class: "author-menu", hidden: true });
  const button = h("button", {
    type: "button",
    class: "author author-button",
    text: name,
    dataset: { key: "author" },
    "aria-haspopup": "true",
    "aria-expanded": "false",
    title: `${name} (${user.id})`,
    onclick: () => {
      const open = menu.hidden;
      const blocked = actions.isBlocked(user.id);
      menu.replaceChildren(
        h("button", {
          type: "button",
          text: blocked ? `Unblock ${name}` : `Block ${name}`,
          onclick: () => (blocked ? actions.unblock(user.id) : actions.block(user.id)),
        }),
        h("button", { type: "button", text: `Message ${name}`, onclick: () => actions.dm(user.id) }),
      );
      menu.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      if (open) menu.firstChild.focus();
    },
  });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault(); // only the menu closes (not the thread panel around it)
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
  return h("span", { class: "author-wrap" }, button, menu);
}

/** Replace a rendered message; a focused control in it keeps the focus (same data-key). */
export function replaceKeepingFocus(old, li) {
  const focused = old.contains(document.activeElement) ? document.activeElement.dataset?.key : undefined;
  old.replaceWith(li);
  if (focused) [...li.querySelectorAll("[data-key]")].find((el) => el.dataset.key === focused)?.focus();
}
