"""The web client in a big room (threshold 3 here): it shows the aggregated online count,
"N people are typing…" and receipts from the aggregates, without a page error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

ROOM = "stock:HOT"

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("browser-big"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_BIG_ROOM_MEMBERS="3",
        CHATSVC_PRESENCE_COALESCE_MS="300",
    ) as running:
        yield running


async def test_a_big_room_in_the_browser(server: ServerProcess) -> None:
    async with chromium() as browser, ClientPool() as clients:
        alice = await visitor(browser)
        page = alice.page
        await page.goto(f"{server.url}/")
        await page.locator("#token").fill(token("alice", name="Alice"))
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await page.locator("#join-room").fill(ROOM)
        await page.locator("#join-room").press("Enter")
        await expect(page.locator("#room-title")).to_have_text(ROOM)

        crowd = []
        for i in range(6):
            member = await clients.connect(server.url, token(f"m{i}", name=f"M{i}"))
            await member.ok("join", {"room": ROOM})
            crowd.append(member)
        await expect(page.locator("#room-online")).to_have_text("7 online")

        for member in crowd[:5]:
            await member.ok("typing", {"room": ROOM, "typing": True})
        await expect(page.locator("#typing")).to_have_text("5 people are typing…")
        for member in crowd[:5]:
            await member.ok("typing", {"room": ROOM, "typing": False})
        await expect(page.locator("#typing")).to_have_text("")

        await crowd[0].disconnect()
        await expect(page.locator("#room-online")).to_have_text("6 online")
        assert alice.errors == [] and alice.console == [], (alice.errors, alice.console)
