"""What the page missed while away comes back: reactions, a pin and a reply made while a
replica restarted are shown once the page is back, by connection state recovery (replayed
live events) and, with recovery off, by ``join {since}`` (its ``events``: ``reaction``,
``pinned``, ``message_updated``, which the page must apply to the messages it shows, never
render as messages of their own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.support.browser import chromium, visitor
from tests.support.clients import ClientPool
from tests.support.servers import ServerProcess, base_env, free_port
from tests.support.tokens import token
from tests.web.test_browser_recovery import ROOM, cut_off_across_restart, sign_in_and_join


@pytest.mark.parametrize("recovery", ["on", "off"])
async def test_reactions_pins_and_replies_missed_while_away(tmp_path: Path, recovery: str) -> None:
    settings = base_env(tmp_path / "data", free_port())
    settings.update(CHATSVC_SHUTDOWN_TIMEOUT="2")
    if recovery == "off":
        settings["CHATSVC_RECOVERY_WINDOW"] = "0"
    first = ServerProcess(settings, tmp_path / "first.log").start()
    second = ServerProcess(settings, tmp_path / "second.log")
    try:
        async with chromium() as browser:
            alice = await visitor(browser)
            page = alice.page
            await sign_in_and_join(page, first.url)
            async with ClientPool() as clients:
                bob = await clients.connect(first.url, token("bob", name="Bob", roles=["admin"]))
                await bob.ok("join", {"room": ROOM})
                posted = await bob.ok("message", {"room": ROOM, "text": "guidance raised"})
                parent = posted["message"]["id"]
                li = page.locator(f'li.msg[data-id="{parent}"]')
                await expect(li.locator(".text")).to_have_text("guidance raised")
                # Alice reacts before the restart: her own reaction must stay pressed after it.
                await li.get_by_role("button", name="React", exact=True).click()
                await li.get_by_role("button", name="React 📈").click()
                await expect(li.locator(".reaction")).to_have_text("📈 1")

            async with ClientPool() as clients:
                async with cut_off_across_restart(page, first, second):
                    bob = await clients.connect(second.url, token("bob", name="Bob", roles=["admin"]))
                    await bob.ok("join", {"room": ROOM})
                    await bob.ok("react", {"room": ROOM, "id": parent, "emoji": "📈"})
                    await bob.ok("react", {"room": ROOM, "id": parent, "emoji": "🚀"})
                    await bob.ok("pin", {"room": ROOM, "id": parent})
                    await bob.ok("message", {"room": ROOM, "text": "by how much?", "reply_to": parent})

                state = "recovered" if recovery == "on" else "connected"
                conn_state = page.locator("#conn-state")
                await expect(conn_state).to_have_attribute("data-state", state, timeout=30000)
                await expect(li.locator(".reaction")).to_have_text(["📈 2", "🚀 1"])
                await expect(li.locator(".reaction").first).to_have_attribute("aria-pressed", "true")
                await expect(li.locator(".reaction").last).to_have_attribute("aria-pressed", "false")
                await expect(li.locator(".pin-mark")).to_have_text("📌 pinned")
                await expect(page.locator("#pins-toggle")).to_have_text("Pins (1)")
                await expect(li.locator(".thread-link")).to_have_text("1 reply")
                # Exactly the two messages: no event rendered as a message of its own.
                await expect(page.locator(".timeline li.msg[data-id] > .text")).to_have_text(
                    ["guidance raised", "by how much?"]
                )
            assert alice.origins() == {first.url}
            assert alice.errors == []  # the console has the socket.io requests cut off
    finally:
        first.stop()
        second.stop()
