"""The web client by keyboard alone: every control has a label, Tab reaches them in a
sensible order, and sign-in, joining and sending work without a pointer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

expect.set_options(timeout=PAGE_WAIT_MS)

UNLABELLED = """() => [...document.querySelectorAll("input, textarea, select, button")]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length))
  .filter((el) => !el.getAttribute("aria-label") && !el.textContent.trim())
  .map((el) => el.outerHTML)"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("keyboard")) as running:
        yield running


async def focused(page: Page) -> str:
    return str(await page.evaluate("document.activeElement && document.activeElement.id"))


async def test_sign_in_join_and_send_by_keyboard(server: ServerProcess) -> None:
    async with chromium() as browser:
        person = await visitor(browser, viewport={"width": 390, "height": 844})
        page = person.page
        await page.goto(f"{server.url}/")
        await expect(page.locator("#dev-form")).to_be_visible()
        assert await page.evaluate(UNLABELLED) == []

        order = []
        for _ in range(5):
            await page.keyboard.press("Tab")
            order.append(await focused(page))
        assert order[0] == "token" and order[2:] == ["dev-sub", "dev-name", ""]  # "" = Dev sign-in
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("ControlOrMeta+a")
        await page.keyboard.type("kim")
        await page.keyboard.press("Tab")
        await page.keyboard.press("ControlOrMeta+a")
        await page.keyboard.type("Kim")
        await page.keyboard.press("Enter")  # submits the dev sign-in form

        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        assert await focused(page) == "join-room"
        await page.keyboard.type("stock:KEYS")
        await page.keyboard.press("Enter")
        await expect(page.locator("#room-title")).to_have_text("stock:KEYS")
        assert await focused(page) == "text"
        await page.keyboard.type("first line")
        await page.keyboard.press("Shift+Enter")
        await page.keyboard.type("second line")
        await page.keyboard.press("Enter")
        await expect(page.locator("li.msg[data-id] .text")).to_have_text("first line\nsecond line")
        assert await page.evaluate(UNLABELLED) == []
    assert person.errors == []


async def test_author_menu_and_conversation_forms_by_keyboard(server: ServerProcess) -> None:
    """Shift+Tab from the composer goes back through the last message's actions (React,
    Reply) to its author's name; React opens the emoji picker with the focus in it, arrows
    move, Enter reacts and gives the focus back; Enter on the name opens its menu with the
    focus on Block, Escape closes it back to the name, and Block hides the messages."""
    async with chromium() as browser:
        person = await visitor(browser)
        page = person.page
        await page.goto(f"{server.url}/")
        await page.locator("#token").fill(token("kim", name="Kim"))
        await page.locator("#token").press("Tab")
        await page.keyboard.press("Enter")  # the Sign in button
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await page.keyboard.type("stock:MENU")
        await page.keyboard.press("Enter")
        await expect(page.locator("#room-title")).to_have_text("stock:MENU")
        async with ClientPool() as clients:
            lee = await clients.connect(server.url, token("lee", name="Lee"))
            await lee.ok("join", {"room": "stock:MENU"})
            await lee.ok("message", {"room": "stock:MENU", "text": "from Lee"})
            theirs = page.locator("li.msg", has_text="from Lee")
            await expect(theirs).to_be_visible()
            assert await focused(page) == "text"
            await page.keyboard.press("Shift+Tab")
            react = theirs.get_by_role("button", name="React", exact=True)
            await expect(react).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(theirs.get_by_role("button", name="React 👍")).to_be_focused()
            await page.keyboard.press("ArrowRight")
            await expect(theirs.get_by_role("button", name="React ❤️")).to_be_focused()
            await page.keyboard.press("Escape")  # closes the picker, back on React
            await expect(theirs.locator(".picker")).to_be_hidden()
            await expect(react).to_be_focused()
            await page.keyboard.press("Enter")
            await page.keyboard.press("Enter")  # 👍
            chip = theirs.locator(".reaction", has_text="👍")
            await expect(chip).to_have_text("👍 1")
            await expect(chip).to_have_attribute("aria-pressed", "true")
            await expect(react).to_be_focused()  # the message re-rendered; the focus stayed
            await page.keyboard.press("Shift+Tab")
            await expect(theirs.get_by_role("button", name="Reply", exact=True)).to_be_focused()
            await page.keyboard.press("Shift+Tab")
            await expect(chip).to_be_focused()
            await page.keyboard.press("Shift+Tab")
            name = theirs.get_by_role("button", name="Lee", exact=True)
            await expect(name).to_be_focused()
            await page.keyboard.press("Enter")
            block = theirs.get_by_role("button", name="Block Lee")
            await expect(block).to_be_focused()
            await page.keyboard.press("Escape")
            await expect(block).to_be_hidden()
            await expect(name).to_be_focused()
            await page.keyboard.press("Enter")
            await page.keyboard.press("Enter")  # Block Lee
            await expect(theirs).to_be_hidden()
        # The conversation forms: labelled, and the DM form submits with Enter.
        await page.locator("#new-conversation summary").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#dm-user")).to_be_visible()
        await page.locator("#blocked-users summary").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#blocked-list li")).to_have_text(["leeUnblock"])
        assert await page.evaluate(UNLABELLED) == []
    assert person.errors == []


async def test_reply_and_mention_by_keyboard(server: ServerProcess) -> None:
    """Reply from the keyboard (the composer gets the focus, Escape cancels the reply) and
    the mention list: arrows move the selection (announced by aria-activedescendant), Tab
    picks, Escape closes the list and leaves the reply alone. Max and Mia are users of their
    own: Kim blocks Lee in the test before."""
    async with chromium() as browser:
        person = await visitor(browser, viewport={"width": 390, "height": 844})
        page = person.page
        await page.goto(f"{server.url}/")
        await page.locator("#token").fill(token("kim", name="Kim"))
        await page.locator("#token").press("Tab")
        await page.keyboard.press("Enter")  # the Sign in button
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await page.keyboard.type("stock:RPLY")
        await page.keyboard.press("Enter")
        await expect(page.locator("#room-title")).to_have_text("stock:RPLY")
        async with ClientPool() as clients:
            for sub, name in (("max", "Max"), ("mia", "Mia")):
                someone = await clients.connect(server.url, token(sub, name=name))
                await someone.ok("join", {"room": "stock:RPLY"})
                await someone.ok("message", {"room": "stock:RPLY", "text": f"from {name}"})
            await expect(page.locator("li.msg[data-id]")).to_have_count(2)
            text = page.locator("#text")
            assert await focused(page) == "text"
            await page.keyboard.press("Shift+Tab")  # React of Mia's message
            await page.keyboard.press("Shift+Tab")  # Reply
            await page.keyboard.press("Enter")
            await expect(page.locator("#reply-author")).to_have_text("Mia")
            await expect(text).to_be_focused()
            await page.keyboard.type("@m")
            options = page.locator("#mention-list [role=option]")
            await expect(options).to_have_text(["Max@max", "Mia@mia"])
            await expect(text).to_have_attribute("aria-activedescendant", "mention-option-0")
            await page.keyboard.press("ArrowDown")
            await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
            await expect(text).to_have_attribute("aria-activedescendant", "mention-option-1")
            await page.keyboard.press("Tab")
            await expect(text).to_have_value("@mia ")
            await expect(text).to_be_focused()
            await page.keyboard.type("@m")
            await expect(options).to_have_count(2)
            await page.keyboard.press("Escape")  # closes the list only
            await expect(page.locator("#mention-list")).to_be_hidden()
            await expect(page.locator("#reply-bar")).to_be_visible()
            await page.keyboard.press("Escape")  # now the reply
            await expect(page.locator("#reply-bar")).to_be_hidden()
            await page.keyboard.press("Backspace")
            await page.keyboard.press("Backspace")
            await page.keyboard.type("see above")
            await page.keyboard.press("Enter")
            sent = page.locator("li.msg.mine[data-id]")
            await expect(sent.locator(".text")).to_have_text("@mia see above")
            await expect(sent.locator(".mention")).to_have_text("@mia")
            await expect(sent.locator(".quote")).to_have_count(0)  # the reply was cancelled
            assert await page.evaluate(UNLABELLED) == []
    assert person.errors == []
