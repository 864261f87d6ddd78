"""Two users chat in a ticker room, each in their own headless Chromium context, using the
web client exactly as a person would (keyboard and clicks): history paging, typing, read
receipts, edit/delete, presence, unread counts, ack errors by code, no markup from user text,
and not one request to another origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

ROOM = "stock:BRWS"
OTHER = "stock:QUIET"
OLD = 45  # two pages of history (the client asks for 30 at a time)

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("browser"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def timeline(page: Page) -> str:
    """The messages of the room on screen."""
    return ".timeline:not([hidden]) .messages:not(.pending) li.msg"


async def join(page: Page, room: str) -> None:
    await page.locator("#join-room").fill(room)
    await page.locator("#join-room").press("Enter")
    await expect(page.locator("#room-title")).to_have_text(room)


async def test_two_users_chat_in_a_ticker_room(server: ServerProcess) -> None:
    async with ClientPool() as clients:
        carol = await clients.connect(server.url, token("carol"))
        await carol.ok("join", {"room": ROOM})
        for i in range(OLD):
            await carol.ok("message", {"room": ROOM, "text": f"old {i:02d}"})

    async with chromium() as browser:
        alice = await visitor(browser)
        bob = await visitor(browser, viewport={"width": 390, "height": 844})  # a phone
        a, b = alice.page, bob.page

        # Alice signs in with the development button, Bob with a pasted token.
        await a.goto(f"{server.url}/")
        await a.locator("#dev-sub").fill("alice")
        await a.locator("#dev-name").fill("Alice")
        await a.get_by_role("button", name="Dev sign-in").click()
        await b.goto(f"{server.url}/")
        await b.locator("#token").fill(token("bob", name="Bob"))
        await b.get_by_role("button", name="Sign in", exact=True).click()
        for page in (a, b):
            await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await expect(a.locator("#me")).to_have_text("Alice")

        # History on join: the newest page; scrolling up brings the older one.
        await join(a, ROOM)
        await expect(a.locator(timeline(a))).to_have_count(30)
        await expect(a.locator(timeline(a)).last).to_contain_text(f"old {OLD - 1:02d}")
        await a.locator(".timeline:not([hidden])").evaluate("el => { el.scrollTop = 0; }")
        await expect(a.locator(timeline(a))).to_have_count(OLD)
        await expect(a.locator(timeline(a)).first).to_contain_text("old 00")
        await expect(a.locator(".timeline:not([hidden]) .older")).to_have_text("Start of the room's history")
        await a.locator(".timeline:not([hidden])").evaluate("el => { el.scrollTop = el.scrollHeight; }")

        # Presence: Alice sees Bob arrive.
        await join(b, ROOM)
        await expect(a.locator("#room-online")).to_have_text("2 online")
        await expect(a.locator("#room-activity")).to_have_text("Bob joined")

        # Typing, then the message (Enter sends); user text is text, never markup.
        text = 'hi <img src=x onerror="document.title=1"> & <b>bold</b>'
        await b.locator("#text").press_sequentially(text)
        await expect(a.locator("#typing")).to_have_text("Bob is typing…")
        await b.locator("#text").press("Enter")
        last = a.locator(timeline(a)).last
        await expect(last.locator(".text")).to_have_text(text)
        await expect(last.locator(".author")).to_have_text("Bob")
        assert await a.locator(".timeline img, .timeline b").count() == 0
        await expect(a.locator("#typing")).to_have_text("")
        await expect(b.locator("#text")).to_have_value("")

        # Read receipts: Alice has the room open at the bottom, so she read it; Bob sees that.
        mine = b.locator(f"{timeline(b)}.mine").last
        message_id = await mine.get_attribute("data-id")
        await expect(mine.locator(".receipts")).to_have_text("Read by Alice")

        # Edit and delete own messages; the other side follows.
        await mine.get_by_role("button", name="Edit").click()
        await b.locator(".edit-input").fill("hi, edited")
        await b.locator(".edit-input").press("Enter")
        theirs = a.locator(f'li.msg[data-id="{message_id}"]')
        await expect(theirs.locator(".text")).to_have_text("hi, edited")
        await expect(theirs.locator(".edited")).to_have_text("edited")
        assert await theirs.get_by_role("button", name="Edit").count() == 0  # not Alice's
        await b.locator(f'li.msg[data-id="{message_id}"]').get_by_role("button", name="Delete").click()
        await expect(theirs.locator(".text")).to_have_text("message deleted")
        await expect(b.locator(f'li.msg[data-id="{message_id}"] .text')).to_have_text("message deleted")

        # Several rooms: Alice switches to another; Bob's next message counts as unread there.
        await join(a, OTHER)
        await b.locator("#text").fill("while you were away")
        await b.locator("#text").press("Enter")
        entry = a.locator(".room-button", has_text=ROOM)
        await expect(entry.locator(".badge")).to_have_text("1")
        await entry.click()
        await expect(a.locator("#room-title")).to_have_text(ROOM)
        await expect(a.locator(timeline(a)).last).to_contain_text("while you were away")
        await expect(entry.locator(".badge")).to_have_count(0)

        # An ack error is shown by its code, with a way to retry or discard.
        await a.locator("#text").fill("x" * 5000)
        await a.locator("#text").press("Enter")
        failed = a.locator(".pending li.failed")
        await expect(failed).to_contain_text("too_large")
        await failed.get_by_role("button", name="Discard").click()
        await expect(failed).to_have_count(0)

        # Bob leaves; Alice sees the count drop.
        await b.get_by_role("button", name="Leave").click()
        await expect(a.locator("#room-online")).to_have_text("1 online")

        for person in (alice, bob):
            assert person.origins() == {server.url}, person.urls
            assert person.errors == [] and person.console == []
