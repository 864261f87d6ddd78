"""Reconnects in a real browser: a replica restart shows ``recovered`` (connection state
recovery, the rooms kept and the missed message replayed without a rejoin), and with
recovery off the page rejoins with ``join {since}`` and catches up.

While the server restarts, the page's Socket.IO requests are held back (Playwright's
routing aborts them) until a message has been posted, so the message is one the page
really missed, whatever its reconnection backoff does."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Page, Route, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ChatClient, ClientPool
from tests.support.servers import ServerProcess, base_env, free_port
from tests.support.tokens import token

ROOM = "stock:RECO"
SOCKET_IO = re.compile(r"/socket\.io/")
ACK_TIMEOUT_MS = 10000  # chatsvc/web/static/js/connection.js

expect.set_options(timeout=PAGE_WAIT_MS)


async def sign_in_and_join(page: Page, url: str) -> None:
    await page.goto(f"{url}/")
    await page.locator("#token").fill(token("alice", name="Alice"))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
    await page.locator("#join-room").fill(ROOM)
    await page.locator("#join-room").press("Enter")
    await expect(page.locator("#room-online")).to_have_text("1 online")


async def bob_posts(clients: ClientPool, url: str, text: str) -> ChatClient:
    """Bob connects to ``url``, joins the room and posts ``text``; he stays connected."""
    bob = await clients.connect(url, token("bob"))
    await bob.ok("join", {"room": ROOM})
    await bob.ok("message", {"room": ROOM, "text": text})
    return bob


@contextlib.asynccontextmanager
async def cut_off_across_restart(
    page: Page, first: ServerProcess, second: ServerProcess
) -> AsyncIterator[None]:
    """The page cannot reach the server while ``first`` stops and ``second`` starts (it shows
    reconnecting), nor inside the block; it can again when the block ends."""

    async def refuse(route: Route) -> None:
        await route.abort()

    await page.context.route(SOCKET_IO, refuse)
    assert first.stop() == 0
    await expect(page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting")
    second.start()
    yield
    await page.context.unroute(SOCKET_IO, refuse)


async def restart_while_away(tmp_path: Path, **env: str) -> None:
    """Sign in, join, restart the server while the page cannot reach it, post a message it
    misses, then let it back; the page must show the message once."""
    settings = base_env(tmp_path / "data", free_port())
    settings.update(CHATSVC_SHUTDOWN_TIMEOUT="2", **env)
    first = ServerProcess(settings, tmp_path / "first.log").start()
    second = ServerProcess(settings, tmp_path / "second.log")
    recovering = env.get("CHATSVC_RECOVERY_WINDOW") != "0"
    try:
        async with chromium() as browser:
            alice = await visitor(browser)
            page = alice.page
            await sign_in_and_join(page, first.url)
            async with ClientPool() as clients:
                await bob_posts(clients, first.url, "before the restart")
            await expect(page.locator("li.msg .text")).to_have_text(["before the restart"])
            async with ClientPool() as clients:
                async with cut_off_across_restart(page, first, second):
                    bob = await bob_posts(clients, second.url, "missed while away")

                state = "recovered" if recovering else "connected"
                conn_state = page.locator("#conn-state")
                await expect(conn_state).to_have_attribute("data-state", state, timeout=30000)
                if recovering:
                    await expect(page.locator("#conn-state")).to_have_text("connected · recovered")
                    await expect(page.locator("#banner-text")).to_contain_text("recovered")
                texts = ["before the restart", "missed while away"]
                await expect(page.locator("li.msg .text")).to_have_text(texts)
                # The room is still joined on the server: live messages keep coming.
                await bob.ok("message", {"room": ROOM, "text": "after"})
                await expect(page.locator("li.msg .text")).to_have_text([*texts, "after"])
            assert alice.origins() == {first.url}
            assert alice.errors == []
            # The server agrees: one session recovered, with the one missed message replayed.
            metrics = await asyncio.to_thread(scrape, second)
            recovered = 'chatsvc_recoveries_total{outcome="recovered"} 1.0' in metrics
            assert recovered == recovering, metrics
            if recovering:
                assert "chatsvc_recovery_replayed_total 1.0" in metrics
    finally:
        first.stop()
        second.stop()


def scrape(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def test_a_restart_shows_recovered(tmp_path: Path) -> None:
    await restart_while_away(tmp_path)


async def test_without_recovery_the_page_rejoins_and_catches_up(tmp_path: Path) -> None:
    await restart_while_away(tmp_path, CHATSVC_RECOVERY_WINDOW="0")


async def test_a_send_retried_across_a_restart_is_stored_once(tmp_path: Path) -> None:
    """A message typed while the server is away stays "sending…" past the ack timeout (the
    client re-emits it with the same client_msg_id; socket.io-client drops the timed-out copy
    from its buffer) and, once the page is back, is stored and shown exactly once. The
    server's answer to a repeated client_msg_id is tested in tests/chat."""
    settings = base_env(tmp_path / "data", free_port())
    settings.update(CHATSVC_SHUTDOWN_TIMEOUT="2")
    first = ServerProcess(settings, tmp_path / "first.log").start()
    second = ServerProcess(settings, tmp_path / "second.log")
    try:
        async with chromium() as browser:
            alice = await visitor(browser)
            page = alice.page
            await sign_in_and_join(page, first.url)

            async def refuse(route: Route) -> None:
                await route.abort()

            await page.context.route(SOCKET_IO, refuse)
            assert first.stop() == 0
            await expect(page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting")
            await page.locator("#text").fill("sent while away")
            await page.locator("#text").press("Enter")
            pending = page.locator(".pending li.msg")
            await expect(pending.locator(".state")).to_have_text("sending…")
            await page.wait_for_timeout(ACK_TIMEOUT_MS + 1500)  # the first attempt has timed out
            second.start()
            async with ClientPool() as clients:
                bob = await clients.connect(second.url, token("bob"))
                await bob.ok("join", {"room": ROOM})
                await page.context.unroute(SOCKET_IO, refuse)
                await expect(pending).to_have_count(0, timeout=30000)
                await expect(page.locator("li.msg[data-id] .text")).to_have_text(["sent while away"])
                history = await bob.ok("history", {"room": ROOM})
                assert [m["text"] for m in history["messages"]] == ["sent while away"]
            assert alice.errors == []
    finally:
        first.stop()
        second.stop()


async def test_a_new_database_resets_what_the_page_shows(tmp_path: Path) -> None:
    """The page rejoins with the newest stream position it saw (README, "Room streams and
    positions"). The replica comes back on a new database (another epoch): the server
    answers `reset: true`, and the page replaces the room's messages with the new
    database's instead of merging (a message-id catch-up would have kept the old one)."""
    port = free_port()
    first_env = base_env(tmp_path / "old", port)
    first_env.update(CHATSVC_SHUTDOWN_TIMEOUT="2", CHATSVC_RECOVERY_WINDOW="0")
    second_env = {**first_env, "CHATSVC_DATA_DIR": str(tmp_path / "new")}
    first = ServerProcess(first_env, tmp_path / "first.log").start()
    second = ServerProcess(second_env, tmp_path / "second.log")
    try:
        async with chromium() as browser:
            alice = await visitor(browser)
            page = alice.page
            await sign_in_and_join(page, first.url)
            async with ClientPool() as clients:
                await bob_posts(clients, first.url, "in the old database")
            await expect(page.locator("li.msg .text")).to_have_text(["in the old database"])
            async with ClientPool() as clients:
                async with cut_off_across_restart(page, first, second):
                    bob = await bob_posts(clients, second.url, "in the new database")
                await expect(page.locator("#conn-state")).to_have_attribute(
                    "data-state", "connected", timeout=30000
                )
                await expect(page.locator("li.msg .text")).to_have_text(["in the new database"])
                # Live messages follow, placed after the reloaded history.
                await bob.ok("message", {"room": ROOM, "text": "after"})
                await expect(page.locator("li.msg .text")).to_have_text(["in the new database", "after"])
            assert alice.origins() == {first.url}
            assert alice.errors == []
    finally:
        first.stop()
        second.stop()
