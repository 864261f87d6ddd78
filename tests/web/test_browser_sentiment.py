"""Marking a post bullish or bearish from the composer (issue 27 polish on issue 25's
`message {..., sentiment}`): a two-button toggle reached by keyboard, at most one pressed,
cleared after the send and on a room switch, offered in public rooms only; the sent message
shows its mark to both users (and keeps it through an edit), an unmarked one none, and the
room header's counts follow for both. Two users in two Chromium contexts; not one request to
another origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token
from tests.web.test_browser_keyboard import UNLABELLED, focused
from tests.web.test_browser_messages import join, send, shown, sign_in

ROOM = "stock:MOOD"
OTHER = "stock:CALM"

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("sentiment"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_SENTIMENT_EVENT_MS="500",  # the header's counts arrive quickly
    ) as running:
        yield running


def toggle(page: Page, mark: str) -> Locator:
    return page.locator(f"#sentiment button[data-sentiment={mark}]")


async def pressed(page: Page) -> list[str]:
    """Which marks the composer's toggle has pressed."""
    found: list[str] = await page.locator("#sentiment button[aria-pressed=true]").evaluate_all(
        "(buttons) => buttons.map((b) => b.dataset.sentiment)"
    )
    return found


async def counts(page: Page, bullish: int, bearish: int) -> None:
    mood = page.locator("#room-sentiment")
    await expect(mood).to_have_attribute("data-bullish", str(bullish))
    await expect(mood).to_have_attribute("data-bearish", str(bearish))


async def test_mark_posts_bullish_or_bearish(server: ServerProcess) -> None:
    async with chromium() as browser:
        alice = await visitor(browser)
        bob = await visitor(browser, viewport={"width": 390, "height": 844})  # a phone
        a, b = alice.page, bob.page
        await sign_in(a, server.url, token("alice", name="Alice"))
        await sign_in(b, server.url, token("bob", name="Bob"))
        await expect(a.locator("#sentiment")).to_be_hidden()  # no room yet
        await join(a, ROOM)
        await join(b, ROOM)
        for page in (a, b):
            await expect(page.locator("#sentiment")).to_be_visible()
            assert await pressed(page) == []
        await expect(toggle(b, "bullish")).to_have_accessible_name("Bullish")

        # By keyboard: Tab from the message to ▲, Space presses it, Shift+Tab back, Enter sends.
        await a.locator("#text").fill("$MOOD to the moon")
        await a.keyboard.press("Tab")
        await expect(toggle(a, "bullish")).to_be_focused()
        await a.keyboard.press("Space")
        await expect(toggle(a, "bullish")).to_have_attribute("aria-pressed", "true")
        await a.keyboard.press("Shift+Tab")
        assert await focused(a) == "text"
        await a.keyboard.press("Enter")
        for page in (a, b):
            mark = shown(page, "to the moon").and_(page.locator("[data-id]")).locator(".sentiment-mark")
            await expect(mark).to_have_text("▲ bullish")
            await expect(mark).to_have_attribute("data-sentiment", "bullish")
            await counts(page, 1, 0)
        assert await pressed(a) == []  # cleared after the send

        # One mark at a time: pressing ▼ after ▲ leaves ▼ alone; the mark goes with the post.
        await toggle(b, "bullish").click()
        await toggle(b, "bearish").click()
        assert await pressed(b) == ["bearish"]
        await send(b, "$MOOD overbought here")
        for page in (a, b):
            await expect(shown(page, "overbought").locator(".sentiment-mark")).to_have_text("▼ bearish")
            await counts(page, 1, 1)
        assert await pressed(b) == []

        # Pressing the pressed one takes it off: the post goes unmarked, the counts stay.
        await toggle(b, "bearish").click()
        await toggle(b, "bearish").click()
        assert await pressed(b) == []
        await send(b, "no view either way")
        await expect(shown(a, "no view either way")).to_have_count(1)
        for page in (a, b):
            await expect(shown(page, "no view either way").locator(".sentiment-mark")).to_have_count(0)
        await toggle(a, "bearish").click()
        await send(a, "$MOOD second thoughts")
        for page in (a, b):
            await counts(page, 1, 2)  # the unmarked post counted nowhere

        # An edit keeps the mark (the server keeps the stored sentiment).
        await shown(a, "to the moon").get_by_role("button", name="Edit", exact=True).click()
        await a.locator(".edit-input").fill("$MOOD to the moon, maybe")
        await a.locator(".edit-input").press("Enter")
        await expect(shown(b, "maybe").locator(".sentiment-mark")).to_have_text("▲ bullish")

        # A room switch clears a chosen mark; a direct conversation offers none.
        await toggle(a, "bullish").click()
        await join(a, OTHER)
        assert await pressed(a) == []
        await a.locator("#new-conversation summary").click()
        await a.locator("#dm-user").fill("bob")
        await a.locator("#dm-user").press("Enter")
        await expect(a.locator("#room-title")).to_have_text("bob")
        await expect(a.locator("#sentiment")).to_be_hidden()
        assert await a.evaluate(UNLABELLED) == []
        assert await b.evaluate(UNLABELLED) == []
        for person in (alice, bob):
            assert person.origins() == {server.url}, person.urls
            assert person.errors == [] and person.console == []


async def test_a_mark_from_another_client_shows_and_a_bad_one_is_refused(server: ServerProcess) -> None:
    """The mark shows on messages from any client; a mark the server refuses never reaches
    the page (the server's invalid_payload, not a message)."""
    room = "stock:APIM"
    async with chromium() as browser, ClientPool() as clients:
        person = await visitor(browser)
        page = person.page
        await sign_in(page, server.url, token("carl", name="Carl"))
        await join(page, room)
        dora = await clients.connect(server.url, token("dora", name="Dora"))
        await dora.ok("join", {"room": room})
        ack = await dora.call("message", {"room": room, "text": "sideways", "sentiment": "neutral"})
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
        await dora.ok("message", {"room": room, "text": "$APIM lower", "sentiment": "bearish"})
        await expect(shown(page, "lower").locator(".sentiment-mark")).to_have_text("▼ bearish")
        await expect(page.locator("li.msg", has_text="sideways")).to_have_count(0)
        await counts(page, 0, 1)
    assert person.errors == [] and person.console == []


async def test_a_refused_marked_post_keeps_its_mark_for_retry(server: ServerProcess) -> None:
    """A marked post the server refuses (slow mode) stays in the sending list with its mark,
    so Retry sends it marked; the toggle is already clear for the next post."""
    room = "stock:SLOW"
    async with chromium() as browser, ClientPool() as clients:
        person = await visitor(browser)
        page = person.page
        await sign_in(page, server.url, token("hana", name="Hana"))
        await join(page, room)
        admin = await clients.connect(server.url, token("mod", name="Mod", roles=["admin"]))
        await admin.ok("join", {"room": room})
        await admin.ok("set_slow_mode", {"room": room, "seconds": 30})
        await expect(page.locator("#room-mode")).to_be_visible()
        await send(page, "first, unmarked")
        await toggle(page, "bearish").click()
        await page.locator("#text").fill("$SLOW fading this")
        await page.locator("#text").press("Enter")
        failed = page.locator(".pending li.msg.failed", has_text="fading this")
        await expect(failed.locator(".state")).to_contain_text("not sent: slow_mode")
        await expect(failed.locator(".sentiment-mark")).to_have_text("▼ bearish")
        assert await pressed(page) == []
        await admin.ok("set_slow_mode", {"room": room, "seconds": 0})
        await expect(page.locator("#room-mode")).to_be_hidden()
        await failed.get_by_role("button", name="Retry").click()
        sent = shown(page, "fading this").and_(page.locator("[data-id]"))
        await expect(sent.locator(".sentiment-mark")).to_have_text("▼ bearish")
        await counts(page, 0, 1)
    assert person.errors == [] and person.console == []
