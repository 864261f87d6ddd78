"""Issue 27's room header against issue 25's server: slow mode set by an admin shows in the
header of a user already in the room, the user's second post inside the interval is refused
and the composer counts down, and the room's rolling sentiment (posted by another client with
`sentiment`) appears and follows live `sentiment` events; not one request to another origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

ROOM = "stock:HEAD"

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("header"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_SENTIMENT_EVENT_MS="500",
    ) as running:
        yield running


async def sign_in_and_join(page: Page, url: str, jwt: str, room: str) -> None:
    await page.goto(f"{url}/")
    await page.locator("#token").fill(jwt)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
    await page.locator("#join-room").fill(room)
    await page.locator("#join-room").press("Enter")
    await expect(page.locator("#room-title")).to_have_text(room)


async def post(page: Page, text: str) -> None:
    await page.locator("#text").fill(text)
    await page.locator("#text").press("Enter")


async def test_slow_mode_and_sentiment_show_in_the_room_header(server: ServerProcess) -> None:
    async with chromium() as browser, ClientPool() as pool:
        alice = await visitor(browser)
        page = alice.page
        await sign_in_and_join(page, server.url, token("alice", name="Alice"), ROOM)
        mode, mood = page.locator("#room-mode"), page.locator("#room-sentiment")
        await expect(mode).to_be_hidden()  # nothing until the server says something

        admin = await pool.connect(server.url, token("mod", name="Mod", roles=["admin"]))
        await admin.ok("join", {"room": ROOM})
        await admin.ok("set_slow_mode", {"room": ROOM, "seconds": 30})
        # The live room_mode event, not a reload: Alice never left the page.
        await expect(mode).to_be_visible()
        await expect(mode).to_have_attribute("data-reason", "moderator")  # a socket; gRPC says admin
        await expect(mode).to_contain_text("one message per 30 s")

        await post(page, "first inside the interval")
        messages = page.locator(".timeline:not([hidden]) .messages:not(.pending) li.msg[data-id]")
        await expect(messages.filter(has_text="first inside the interval")).to_have_count(1)
        await post(page, "second inside the interval")
        await expect(page.locator("#composer-hint")).to_contain_text("Slow mode: you can post again in")
        await expect(messages.filter(has_text="second inside the interval")).to_have_count(0)

        # Sentiment from another client's posts (the admin is not slowed): 2 bullish, 1 bearish.
        for text, sentiment in (
            ("$HEAD up", "bullish"),
            ("$HEAD up more", "bullish"),
            ("$HEAD down", "bearish"),
        ):
            await admin.ok("message", {"room": ROOM, "text": text, "sentiment": sentiment})
        await expect(mood).to_be_visible()
        await expect(mood).to_have_attribute("data-bullish", "2")
        await expect(mood).to_have_attribute("data-bearish", "1")

        await admin.ok("set_slow_mode", {"room": ROOM, "seconds": 0})
        await expect(mode).to_be_hidden()
        assert alice.origins() == {server.url}, alice.urls
        assert not alice.errors, alice.errors
