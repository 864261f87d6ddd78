"""The main views at desktop and phone width, in the light and the dark theme, with the
conversation list (a DM, a private room, ticker rooms), a private room's members, a reply
with its quote, reactions, a mention, a pin, a thread, and posts marked bullish (one through
the composer's toggle) with the header's sentiment counts.

The theme follows the system (prefers-color-scheme) and the phone layout stacks the rooms
above the conversation; both are asserted here. The screenshots go to the test's temporary
directory, or, with ``CHATSVC_SCREENSHOT_DIR=docs/screenshots``, to the ones README links.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

ROOM = "stock:005930"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("shots"), CHATSVC_SENTIMENT_EVENT_MS="500") as running:
        yield running


async def background(page: Page) -> str:
    return str(await page.evaluate("getComputedStyle(document.body).backgroundColor"))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Where the screenshots go."""
    folder = Path(os.environ.get("CHATSVC_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_main_views_in_both_themes_and_widths(server: ServerProcess, out: Path) -> None:
    async with chromium() as browser:
        alice = await visitor(browser, viewport=DESKTOP)
        page = alice.page
        await page.emulate_media(color_scheme="light")
        await page.goto(f"{server.url}/")
        await expect(page.locator("#dev-form")).to_be_visible()
        await page.screenshot(path=out / "signin-desktop-light.png")
        await page.emulate_media(color_scheme="dark")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=out / "signin-phone-dark.png")

        await page.set_viewport_size(DESKTOP)
        await page.locator("#dev-sub").fill("alice")
        await page.locator("#dev-name").fill("Alice")
        await page.get_by_role("button", name="Dev sign-in").click()
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await page.get_by_role("button", name="stock:AAPL").click()
        await page.get_by_role("button", name=ROOM).click()
        await expect(page.locator("#room-title")).to_have_text(ROOM)
        async with ClientPool() as clients:
            bob = await clients.connect(server.url, token("bob", name="Bob"))
            await bob.ok("join", {"room": ROOM})
            await bob.ok(
                "message", {"room": ROOM, "text": "Samsung up 2% on the memory news", "sentiment": "bullish"}
            )
            await page.locator("#text").fill("Anyone watching the HBM numbers?")
            await page.locator("#text").press("Enter")
            question = page.locator("li.msg.mine[data-id]", has_text="HBM numbers")
            await expect(question).to_have_count(1)
            # Issue 27: a reply quoting Alice that mentions her, and reactions (hers pressed).
            await bob.ok(
                "message",
                {
                    "room": ROOM,
                    "text": "@alice yes, the guidance looks strong.",
                    "reply_to": await question.get_attribute("data-id"),
                    "mentions": ["alice"],
                },
            )
            news = page.locator("li.msg[data-id]", has_text="Samsung up 2%")
            await bob.ok("react", {"room": ROOM, "id": await news.get_attribute("data-id"), "emoji": "🚀"})
            await news.get_by_role("button", name="React", exact=True).click()
            await news.get_by_role("button", name="React 🚀").click()
            await expect(news.locator(".reaction")).to_have_text("🚀 2")
            await news.get_by_role("button", name="React", exact=True).click()
            await news.get_by_role("button", name="React 📈").click()
            await expect(news.locator(".reaction")).to_have_text(["🚀 2", "📈 1"])
            await expect(page.locator("li.msg.mentions-me .quote")).to_have_count(1)
            await page.locator("#text").fill("Same here: holding until earnings.")
            await page.locator("#sentiment button[data-sentiment=bullish]").click()
            await page.locator("#text").press("Enter")
            last = page.locator("li.msg.mine[data-id]", has_text="holding until earnings")
            await expect(last).to_have_count(1)
            await expect(last.locator(".sentiment-mark")).to_have_text("▲ bullish")
            await expect(page.locator("#room-sentiment")).to_have_attribute("data-bullish", "2")
            await bob.ok("read", {"room": ROOM, "message_id": await last.get_attribute("data-id")})
            await expect(last.locator(".receipts")).to_have_text("Read by Bob")
            # Conversations (issue 24): a DM from Bob and a private room Carol made, both
            # delivered without a join, listed newest activity first with unread badges.
            carol = await clients.connect(server.url, token("carol", name="Carol"))
            dm = await bob.ok("open_dm", {"user": "alice"})
            desk = await carol.ok(
                "create_room", {"kind": "private", "title": "Semis desk", "members": ["alice", "bob"]}
            )
            calendar = await carol.ok(
                "message", {"room": desk["room"], "text": "Morning! Earnings calendar for the week is up."}
            )
            await carol.ok("pin", {"room": desk["room"], "id": calendar["message"]["id"]})
            await bob.ok("message", {"room": dm["room"], "text": "Did you see the block trade at the close?"})
            names = page.locator(".room-button .room-name")
            await expect(names).to_have_text(["bob", "Semis desk", ROOM, "stock:AAPL"])
            await expect(page.locator(".room-button .badge")).to_have_text(["1", "1"])
            await expect(page.locator(".toast")).to_have_count(0)  # the notices fade (6 s)
            await bob.ok("typing", {"room": ROOM, "typing": True})
            await expect(page.locator("#typing")).to_have_text("Bob is typing…")

            backgrounds = {}
            for scheme in ("light", "dark"):
                await page.emulate_media(color_scheme=scheme)
                backgrounds[scheme] = await background(page)
                for width, size in (("desktop", DESKTOP), ("phone", PHONE)):
                    await page.set_viewport_size(size)
                    await page.screenshot(path=out / f"chat-{width}-{scheme}.png")
                    sidebar = await page.locator(".sidebar").bounding_box()
                    messages = await page.locator(".timeline:not([hidden])").bounding_box()
                    assert sidebar is not None and messages is not None
                    if width == "phone":  # rooms above the conversation, full width
                        assert sidebar["y"] + sidebar["height"] <= messages["y"] + 1
                        assert messages["width"] > PHONE["width"] * 0.9
                    else:  # side by side
                        assert sidebar["x"] + sidebar["width"] <= messages["x"] + 1
            assert backgrounds["light"] != backgrounds["dark"]

            # A private room open with its members and their roles.
            desk_entry = page.locator(".room-button", has_text="Semis desk")
            await desk_entry.click()
            await expect(page.locator("#room-title")).to_have_text("Semis desk")
            await expect(desk_entry.locator(".badge")).to_have_count(0)  # opened and read
            await expect(page.locator("#pins-toggle")).to_have_text("Pins (1)")  # the owner pinned it
            await page.get_by_role("button", name="Members").click()
            roles = page.locator("#member-list .role")
            await expect(roles).to_have_text(["member", "member", "owner"])  # alice, bob, carol
            await page.emulate_media(color_scheme="dark")
            await page.set_viewport_size(PHONE)
            await page.screenshot(path=out / "conversations-phone-dark.png")
            await page.locator("#new-conversation summary").click()
            await page.locator("#pins-toggle").click()
            await expect(page.locator("#pin-list .pin-text")).to_have_text(
                ["Morning! Earnings calendar for the week is up."]
            )
            await page.emulate_media(color_scheme="light")
            await page.set_viewport_size(DESKTOP)
            await page.screenshot(path=out / "conversations-desktop-light.png")

            # A thread: the question, Bob's reply, and the panel's own composer.
            await page.locator("#new-conversation summary").click()
            await page.locator(".room-button", has_text=ROOM).click()
            await expect(page.locator("#room-title")).to_have_text(ROOM)
            await page.get_by_role("button", name="1 reply: open the thread").click()
            thread = page.locator("#thread-panel li.msg .text")
            await expect(thread).to_have_text(
                ["Anyone watching the HBM numbers?", "@alice yes, the guidance looks strong."]
            )
            await page.locator("#thread-text").fill("Thanks, checking the transcript")
            await page.emulate_media(color_scheme="dark")
            await page.screenshot(path=out / "thread-desktop-dark.png")
            await page.emulate_media(color_scheme="light")
            await page.set_viewport_size(PHONE)
            await page.screenshot(path=out / "thread-phone-light.png")
            panel = await page.locator("#thread-panel").bounding_box()
            assert panel is not None and panel["width"] >= PHONE["width"] - 1  # the whole screen

            # Composing a reply with a mention: the reply bar and the member list.
            await page.locator("#thread-close").click()
            await expect(page.locator("#thread-panel")).to_be_hidden()
            news = page.locator("li.msg[data-id]", has_text="Samsung up 2%")
            await news.get_by_role("button", name="Reply").click()
            await page.locator("#text").press_sequentially("@b")
            await expect(page.locator("#mention-list [role=option]")).to_have_text(["Bob@bob"])
            await page.emulate_media(color_scheme="dark")
            await page.screenshot(path=out / "compose-phone-dark.png")
    assert alice.origins() == {server.url}
    assert alice.errors == [] and alice.console == []
