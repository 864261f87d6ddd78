"""What the server decides, as the web client shows it: a refused token, an admin's
announcement, a mute (the send's ack error by code), a kick (``kicked``) and an admin
disconnect (``session_end`` without reconnect), each in a real headless Chromium."""

from __future__ import annotations

from playwright.async_api import Page, expect

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import admin_client
from tests.conftest import ServerFactory
from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.tokens import token

ROOM = "stock:SESS"
SHORT_TTL = 8  # seconds: the page renews (or warns) halfway through

expect.set_options(timeout=PAGE_WAIT_MS)


async def sign_in(page: Page, jwt: str) -> None:
    await page.locator("#token").fill(jwt)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_a_refused_token_is_shown_by_its_code(server_factory: ServerFactory) -> None:
    server = server_factory(name="refused")
    async with chromium() as browser:
        person = await visitor(browser)
        await person.page.goto(f"{server.url}/")
        await sign_in(person.page, token("alice", secret="another-secret-0123456789-abcdefghijklmnop"))
        await expect(person.page.locator("#signin-error")).to_contain_text("token_invalid")
        await expect(person.page.locator("#signin")).to_be_visible()
        await sign_in(person.page, "not a token")
        await expect(person.page.locator("#signin-error")).to_contain_text("invalid_token")
        await sign_in(person.page, token("alice", ttl=-60))
        await expect(person.page.locator("#signin-error")).to_contain_text("token_expired")
    assert person.errors == []


async def test_moderation_reaches_the_page(server_factory: ServerFactory) -> None:
    server = server_factory(name="moderated")
    async with chromium() as browser, admin_client(server.grpc_port) as admin:
        person = await visitor(browser)
        page = person.page
        await page.goto(f"{server.url}/")
        await sign_in(page, token("mallory", name="Mallory"))
        await page.locator("#join-room").fill(ROOM)
        await page.locator("#join-room").press("Enter")
        await expect(page.locator("#room-online")).to_have_text("1 online")

        await admin.Publish(admin_pb2.PublishRequest(room=ROOM, text="Trading halted"))
        announcement = page.locator("li.msg.kind-system")
        await expect(announcement.locator(".text")).to_have_text("Trading halted")
        await expect(announcement.locator(".author")).to_have_text("System")

        await admin.MuteUser(admin_pb2.MuteUserRequest(room=ROOM, user_id="mallory", reason="spam"))
        await page.locator("#text").fill("buy buy buy")
        await page.locator("#text").press("Enter")
        await expect(page.locator(".pending li.failed")).to_contain_text("forbidden")

        await admin.KickFromRoom(admin_pb2.KickFromRoomRequest(room=ROOM, user_id="mallory", reason="spam"))
        await expect(page.locator("#banner-text")).to_have_text(f"Removed from {ROOM}: spam")
        await expect(page.locator(".room-button")).to_have_count(0)
        await expect(page.locator("#room-title")).to_have_text("Join a room to start")

        bye = admin_pb2.DisconnectUserRequest(user_id="mallory", reason="account review")
        await admin.DisconnectUser(bye)
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#banner-text")).to_contain_text("account review")
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "signed-out")
    assert person.origins() == {server.url}
    assert person.errors == []


async def test_a_session_outlives_its_first_token_in_development(server_factory: ServerFactory) -> None:
    """Before ``exp`` the page gets a new token (from /dev/token here) and sends ``refresh``:
    the socket keeps running past the first token's expiry."""
    server = server_factory(name="refresh")
    async with chromium() as browser:
        person = await visitor(browser)
        page = person.page
        await page.goto(f"{server.url}/")
        await expect(page.locator("#dev-form")).to_be_visible()  # the page knows it may renew
        await sign_in(page, token("alice", name="Alice", ttl=SHORT_TTL))
        await page.locator("#join-room").fill(ROOM)
        await page.locator("#join-room").press("Enter")
        await expect(page.locator("#room-online")).to_have_text("1 online")
        await page.wait_for_timeout((SHORT_TTL + 2) * 1000)  # past the first token's exp
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await page.locator("#text").fill("still here")
        await page.locator("#text").press("Enter")
        await expect(page.locator("li.msg[data-id] .text")).to_have_text(["still here"])
        assert await page.locator("#banner").is_hidden()
    assert person.errors == []


async def test_without_a_new_token_the_session_ends_when_it_expires(server_factory: ServerFactory) -> None:
    """No dev sign-in (production): the page warns before ``exp``; then the server ends the
    session with ``token_expired`` and the page is back at sign-in saying so."""
    server = server_factory(name="expire", CHATSVC_ENV="production", CHATSVC_WEB_APP="true")
    async with chromium() as browser:
        person = await visitor(browser)
        page = person.page
        await page.goto(f"{server.url}/")
        await sign_in(page, token("alice", name="Alice", ttl=SHORT_TTL))
        await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#banner-text")).to_contain_text("about to expire")
        await expect(page.locator("#signin")).to_be_visible(timeout=(SHORT_TTL + 5) * 1000)
        await expect(page.locator("#signin-error")).to_contain_text("token_expired")
    assert person.errors == []
