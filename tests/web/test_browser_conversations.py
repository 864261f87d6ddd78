"""Conversations in the web client (issue 27), three users each in their own headless
Chromium context: a direct message reaches a receiver that never joined (listed with an
unread badge and a notice), a private room is created and a member invited (the invitee
sees it in its list) and removed (it loses it), roles are shown, blocking hides the
blocked user's messages, the list is newest activity first, titles stay text, and no
page talks to another origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from tests.support.browser import PAGE_WAIT_MS, Visitor, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

expect.set_options(timeout=PAGE_WAIT_MS)

TITLE = 'Deal desk <img src=x onerror="document.title=1">'
SHOWN = ".timeline:not([hidden]) .messages:not(.pending) li.msg"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("conversations"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


async def sign_in(person: Visitor, url: str, sub: str, name: str) -> Page:
    page = person.page
    await page.goto(f"{url}/")
    await page.locator("#token").fill(token(sub, name=name))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
    return page


async def say(page: Page, text: str) -> None:
    await page.locator("#text").fill(text)
    await page.locator("#text").press("Enter")
    await expect(page.locator(f"{SHOWN}.mine").last.locator(".text")).to_have_text(text)


def entry(page: Page, title: str) -> Locator:
    return page.locator(".room-button", has=page.locator(".room-name", has_text=title))


async def test_direct_messages_private_rooms_and_blocking(server: ServerProcess) -> None:
    async with chromium() as browser:
        people = [await visitor(browser), await visitor(browser, viewport={"width": 390, "height": 844})]
        people.append(await visitor(browser))
        a = await sign_in(people[0], server.url, "alice", "Alice")
        b = await sign_in(people[1], server.url, "bob", "Bob")  # on a phone
        c = await sign_in(people[2], server.url, "carol", "Carol")

        # Alice opens a DM with Bob by user id and writes; Bob never joined anything.
        await a.locator("#new-conversation summary").click()
        await a.locator("#dm-user").fill("bob")
        await a.locator("#dm-user").press("Enter")
        await expect(a.locator("#room-title")).to_have_text("bob")
        await expect(a.locator("#leave")).to_be_hidden()  # a DM stays listed
        await say(a, "hello Bob, <b>psst</b>")
        dm = b.locator(".room-button", has=b.locator(".kind-direct"))
        await expect(dm.locator(".badge")).to_have_text("1")
        await expect(dm.locator(".preview")).to_have_text("Alice: hello Bob, <b>psst</b>")
        await expect(b.locator(".toast.notice", has_text="New direct message from Alice")).to_have_count(1)
        await expect(b.locator("#room-title")).to_have_text("Join a room to start")  # not opened for him
        await dm.click()
        await expect(b.locator(SHOWN)).to_have_count(1)
        await expect(b.locator(SHOWN).locator(".text")).to_have_text("hello Bob, <b>psst</b>")
        await expect(dm.locator(".badge")).to_have_count(0)
        await say(b, "hi Alice")
        await expect(a.locator(SHOWN).last.locator(".text")).to_have_text("hi Alice")

        # Alice creates a private room with Bob; the title is text, never markup.
        await a.locator("#create-title").fill(TITLE)
        await a.locator("#create-members").fill("bob")
        await a.locator("#create-members").press("Enter")
        await expect(a.locator("#room-title")).to_have_text(TITLE)
        await say(a, "welcome to the desk")
        desk_b = entry(b, "Deal desk")
        await expect(desk_b.locator(".badge")).to_have_text("1")
        await expect(desk_b.locator(".count")).to_contain_text("member")
        # Newest activity first: the desk's message is newer than the DM's.
        await expect(b.locator(".room-button .room-name").first).to_have_text(TITLE)
        await expect(a.locator(".room-button .room-name")).to_have_text([TITLE, "bob"])

        # Roles in the members panel; Alice (owner) invites Carol, who sees it in her list.
        await a.get_by_role("button", name="Members").click()
        members = a.locator("#member-list li")
        await expect(members).to_have_count(2)
        await expect(a.locator('#member-list li[data-user="alice"] .role')).to_have_text("owner")
        await expect(a.locator('#member-list li[data-user="bob"] .role')).to_have_text("member")
        await a.locator("#add-member").fill("carol")
        await a.locator("#add-member").press("Enter")
        await expect(members).to_have_count(3)
        desk_c = entry(c, "Deal desk")
        await expect(desk_c).to_have_count(1)
        await expect(desk_c.locator(".count")).to_contain_text("member")
        await desk_c.click()
        await expect(c.locator(SHOWN).locator(".text")).to_have_text(["welcome to the desk"])
        # Carol is a member: no Remove buttons and no invite form for her.
        await c.get_by_role("button", name="Members").click()
        await expect(c.locator("#member-list li")).to_have_count(3)
        await expect(c.locator("#member-list button")).to_have_count(0)
        await expect(c.locator("#add-member-form")).to_be_hidden()

        # Alice removes Carol: the room leaves Carol's list and page.
        await a.get_by_role("button", name="Remove carol").click()
        await expect(members).to_have_count(2)
        await expect(desk_c).to_have_count(0)
        await expect(c.locator("#room-title")).to_have_text("Join a room to start")
        await expect(c.locator("#banner-text")).to_contain_text("Removed from")

        # Blocking: Alice blocks Bob from his message's author menu; his messages disappear.
        await desk_b.click()
        await say(b, "first from Bob")
        theirs = a.locator(SHOWN, has_text="first from Bob")
        await expect(theirs).to_have_count(1)
        await theirs.get_by_role("button", name="Bob", exact=True).click()
        await theirs.get_by_role("button", name="Block Bob").click()
        await expect(theirs).to_be_hidden()
        await say(b, "second from Bob")
        await say(a, "after the block")
        await expect(a.locator(f"{SHOWN}:not([hidden])").locator(".text")).to_have_text(
            ["welcome to the desk", "after the block"]
        )
        await expect(a.locator("li.msg", has_text="second from Bob")).to_have_count(0)
        # The list's preview follows: Alice's newest message, then after she deletes it the
        # newest one left.
        preview = desk_b.locator(".preview")
        await expect(preview).to_have_text("Alice: after the block")
        await (
            a.locator(f"{SHOWN}.mine", has_text="after the block")
            .get_by_role("button", name="Delete")
            .click()
        )
        await expect(preview).to_have_text("Bob: second from Bob")

        # role_changed: Alice (from another device) makes Bob a moderator; his list and
        # Alice's open members panel follow, and Bob may now remove members.
        desk = await a.locator("#room-list li", has_text="Deal desk").get_attribute("data-room")
        async with ClientPool() as clients:
            phone = await clients.connect(server.url, token("alice", name="Alice"))
            await phone.ok("set_role", {"room": desk, "user": "bob", "role": "moderator"})
        await expect(desk_b.locator(".count")).to_contain_text("moderator")
        await expect(a.locator('#member-list li[data-user="bob"] .role')).to_have_text("moderator")
        await b.get_by_role("button", name="Members").click()
        await expect(b.locator("#add-member-form")).to_be_visible()
        await expect(b.locator("#member-list button")).to_have_count(0)  # the owner is not his to remove

        # Leaving a private room removes oneself: Bob leaves; it is gone from his list.
        await b.get_by_role("button", name="Leave").click()
        await expect(desk_b).to_have_count(0)
        await expect(a.locator("#member-list li")).to_have_count(1)

        # A reload keeps the list (my_rooms) and the block (blocked): the server leaves Bob's
        # DM message out of Alice's history; unblocking brings it back.
        await a.reload()
        await expect(a.locator("#conn-state")).to_have_attribute("data-state", "connected")
        await expect(a.locator(".room-button .room-name")).to_have_text([TITLE, "bob"])
        await entry(a, "bob").click()
        await expect(a.locator(SHOWN).locator(".text")).to_have_text(["hello Bob, <b>psst</b>"])
        await a.locator("#blocked-users summary").click()
        await expect(a.locator("#blocked-list li")).to_have_text(["bobUnblock"])
        await a.get_by_role("button", name="Unblock bob").click()
        await expect(a.locator(SHOWN).locator(".text")).to_have_text(["hello Bob, <b>psst</b>", "hi Alice"])
        await expect(a.locator("#blocked-none")).to_be_visible()

        assert await a.locator(".sidebar img, .room-header img, .timeline img, .timeline b").count() == 0
        for person in people:
            assert person.origins() == {server.url}, person.urls
            assert person.errors == [] and person.console == []
