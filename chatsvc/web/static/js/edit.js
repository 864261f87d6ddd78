// Editing a message in place, for the room's timeline and the thread panel alike: the text
// becomes an input with Save and Cancel; Enter saves, Escape cancels (only the edit: the
// thread panel around it stays open).
import { h } from "./dom.js";

/**
 * Turn the rendered `li` of `message` into an edit form. `save(text)` answers true once the
 * server took the edit (the message is then rendered again by whoever shows it); `cancel()`
 * renders the message as it was. The input and the buttons carry data-key "edit", so the
 * re-render gives the focus back to the message's Edit button (replaceKeepingFocus).
 */
export function editInPlace(li, message, { save, cancel }) {
  const input = h("input", {
    class: "edit-input",
    value: message.text,
    "aria-label": "Edit message",
    dataset: { key: "edit" },
  });
  let saving = false;
  const submit = async () => {
    const text = input.value;
    if (saving) return;
    if (!text.trim() || text === message.text) return cancel();
    // readOnly, not disabled: a disabled input loses the focus, and the re-render puts it
    // back on the Edit button only when the focus is still inside the message.
    saving = true;
    input.readOnly = true;
    li.setAttribute("aria-busy", "true");
    if (!(await save(text))) {
      saving = false;
      input.readOnly = false;
      li.removeAttribute("aria-busy");
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
    } else if (event.key === "Escape") {
      event.preventDefault(); // the thread panel closes on an Escape nobody took
      cancel();
    }
  });
  const form = h(
    "div",
    { class: "edit" },
    input,
    h("button", { type: "button", text: "Save", dataset: { key: "edit" }, onclick: submit }),
    h("button", { type: "button", text: "Cancel", dataset: { key: "edit" }, onclick: cancel }),
  );
  li.querySelector(".text").replaceWith(form);
  li.querySelector(".actions")?.remove();
  li.querySelector(".reactions")?.remove();
  input.focus();
}
