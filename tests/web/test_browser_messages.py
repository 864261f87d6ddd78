"""Issue 27 in the web client: two users, each in their own headless Chromium context, reply
with a quote and open the thread, react (own reactions pressed, counts the same on both
sides), mention with the member autocomplete (the mentioned user is told, also for a room it
never joined), pin and unpin (only where the role allows), and every change is seen by the
other user; not one request to another origin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token
from tests.web.test_browser_keyboard import UNLABELLED

ROOM = "stock:MSGS"
AWAY = "stock:AWAY"  # where Bob is while he is mentioned
NEVER = "stock:NEVR"  # a room Bob never joined

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("messages"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def shown(page: Page, text: str) -> Locator:
    """The message whose own text (not a quote of it) has ``text``, in the room on screen."""
    messages = page.locator(".timeline:not([hidden]) .messages:not(.pending) li.msg")
    return messages.filter(has=page.locator("p.text", has_text=text))


async def sign_in(page: Page, url: str, jwt: str) -> None:
    await page.goto(f"{url}/")
    await page.locator("#token").fill(jwt)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")


async def join(page: Page, room: str) -> None:
    await page.locator("#join-room").fill(room)
    await page.locator("#join-room").press("Enter")
    await expect(page.locator("#room-title")).to_have_text(room)


async def send(page: Page, text: str) -> None:
    await page.locator("#text").fill(text)
    await page.locator("#text").press("Enter")
    await expect(shown(page, text).and_(page.locator("[data-id]"))).to_have_count(1)


async def test_reply_react_mention_pin_seen_by_the_other_user(server: ServerProcess) -> None:
    async with chromium() as browser:
        alice = await visitor(browser)
        bob = await visitor(browser, viewport={"width": 390, "height": 844})  # a phone
        a, b = alice.page, bob.page
        # Alice moderates (`admin` pins in public rooms); Bob is a plain user.
        await sign_in(a, server.url, token("alice", name="Alice", roles=["admin"]))
        await sign_in(b, server.url, token("bob", name="Bob"))
        await join(a, ROOM)
        await join(b, ROOM)
        await expect(a.locator("#room-online")).to_have_text("2 online")
        await send(b, "Earnings beat by 8%")

        # Reply with a quote: the bar says to what, the reply carries the quote for both.
        await shown(a, "Earnings beat").get_by_role("button", name="Reply").click()
        await expect(a.locator("#reply-bar")).to_be_visible()
        await expect(a.locator("#reply-author")).to_have_text("Bob")
        await expect(a.locator("#reply-preview")).to_have_text("Earnings beat by 8%")
        await expect(a.locator("#text")).to_be_focused()
        await a.locator("#text").press("Escape")  # changed her mind...
        await expect(a.locator("#reply-bar")).to_be_hidden()
        await shown(a, "Earnings beat").get_by_role("button", name="Reply").click()
        await send(a, "Source?")
        await expect(a.locator("#reply-bar")).to_be_hidden()
        for page in (a, b):
            reply = shown(page, "Source?")
            await expect(reply.locator(".quote")).to_have_text("BobEarnings beat by 8%")
            await expect(shown(page, "Earnings beat").locator(".thread-link")).to_have_text("1 reply")

        # The thread page: Bob opens it from the reply count and answers in it.
        await shown(b, "Earnings beat").get_by_role("button", name="1 reply: open the thread").click()
        panel = b.locator("#thread-panel")
        await expect(panel).to_be_visible()
        await expect(panel.locator("li.msg .text")).to_have_text(["Earnings beat by 8%", "Source?"])
        await expect(b.locator("#thread-text")).to_be_focused()
        await b.locator("#thread-text").fill("The 8-K, page 3")
        await b.locator("#thread-text").press("Enter")
        await expect(panel.locator("li.msg[data-id] .text")).to_have_text(
            ["Earnings beat by 8%", "Source?", "The 8-K, page 3"]
        )
        await expect(shown(a, "Earnings beat").locator(".thread-link")).to_have_text("2 replies")
        await expect(shown(a, "The 8-K").locator(".quote")).to_have_text("BobEarnings beat by 8%")
        await b.locator("#thread-panel").press("Escape")
        await expect(panel).to_be_hidden()

        # Reactions: picked from the menu, counted the same on both sides, own ones pressed.
        theirs = shown(b, "Source?")
        await theirs.get_by_role("button", name="React", exact=True).click()
        await theirs.get_by_role("button", name="React 🚀").click()
        chip_b = theirs.locator(".reaction", has_text="🚀")
        await expect(chip_b).to_have_text("🚀 1")
        await expect(chip_b).to_have_attribute("aria-pressed", "true")
        chip_a = shown(a, "Source?").locator(".reaction", has_text="🚀")
        await expect(chip_a).to_have_text("🚀 1")
        await expect(chip_a).to_have_attribute("aria-pressed", "false")
        await chip_a.click()  # Alice adds hers by pressing Bob's
        for chip in (chip_a, chip_b):
            await expect(chip).to_have_text("🚀 2")
        await expect(chip_a).to_have_attribute("aria-pressed", "true")
        await expect(chip_b).to_have_attribute("aria-pressed", "true")
        await chip_b.click()  # Bob takes his back
        for chip in (chip_a, chip_b):
            await expect(chip).to_have_text("🚀 1")
        await expect(chip_b).to_have_attribute("aria-pressed", "false")
        await expect(chip_a).to_have_attribute("aria-pressed", "true")
        # An edit keeps the reactions (an edit carries none: the client keeps what it knows).
        await shown(a, "Source?").get_by_role("button", name="Edit").click()
        await a.locator(".edit-input").fill("Source? Link please")
        await a.locator(".edit-input").press("Enter")
        await expect(shown(b, "Link please").locator(".reaction")).to_have_text("🚀 1")
        await expect(shown(a, "Link please").locator(".reaction")).to_have_text("🚀 1")

        # Mentions: "@" lists the people of the room; Enter picks; Bob sees himself named.
        await a.locator("#text").press_sequentially("thanks @b")
        options = a.locator("#mention-list [role=option]")
        await expect(options).to_have_count(1)
        await expect(options).to_have_text("Bob@bob")
        await expect(a.locator("#text")).to_have_attribute("aria-expanded", "true")
        await a.locator("#text").press("Enter")  # picks, does not send
        await expect(a.locator("#mention-list")).to_be_hidden()
        await expect(a.locator("#text")).to_have_value("thanks @bob ")
        await a.locator("#text").press_sequentially("for the link")
        await a.locator("#text").press("Enter")
        mention = shown(b, "for the link")
        await expect(mention.locator(".mention")).to_have_text("@bob")
        await expect(mention).to_have_class("msg mentions-me")
        await expect(shown(a, "for the link").locator(".mention")).to_have_text("@bob")

        # Away in another room, Bob gets a badge and a notice for a mention of him.
        await join(b, AWAY)
        await send(a, "@bob are you still holding?")
        entry = b.locator(".room-button", has_text=ROOM)
        await expect(entry.locator(".mention-badge")).to_have_text("@1")
        await expect(b.locator(".toast.notice", has_text="Alice mentioned you")).to_have_count(1)
        await entry.click()
        await expect(shown(b, "still holding")).to_have_class("msg mentions-me")
        await expect(entry.locator(".mention-badge")).to_have_count(0)  # read
        # ...and for a room he never joined: it is listed with the badge; opening it joins.
        await join(a, NEVER)
        await send(a, "@bob this room is quieter")
        never = b.locator(".room-button", has_text=NEVER)
        await expect(never.locator(".mention-badge")).to_have_text("@1")
        await never.click()
        await expect(b.locator("#room-title")).to_have_text(NEVER)
        await expect(shown(b, "quieter")).to_have_class("msg mentions-me")
        await expect(never.locator(".mention-badge")).to_have_count(0)
        await b.locator(".room-button", has_text=ROOM).click()
        await a.locator(".room-button", has_text=ROOM).click()

        # Pins: Alice (admin) pins Bob's message; Bob sees the mark and the list, and is
        # offered no Pin or Unpin (not his to do).
        await shown(a, "Earnings beat").get_by_role("button", name="Pin", exact=True).click()
        await expect(shown(b, "Earnings beat").locator(".pin-mark")).to_have_text("📌 pinned")
        await expect(b.locator("#pins-toggle")).to_have_text("Pins (1)")
        assert await b.get_by_role("button", name="Pin", exact=True).count() == 0
        await b.locator("#pins-toggle").click()
        await expect(b.locator("#pin-list li .pin-text")).to_have_text(["Earnings beat by 8%"])
        assert await b.locator("#pin-list").get_by_role("button", name="Unpin").count() == 0
        await a.locator("#pins-toggle").click()
        await expect(a.locator("#pin-list li .pin-text")).to_have_text(["Earnings beat by 8%"])
        await a.locator("#pin-list").get_by_role("button", name="Unpin").click()
        await expect(b.locator("#pin-list li")).to_have_count(0)
        await expect(b.locator("#pins-none")).to_be_visible()
        await expect(b.locator("#pins-toggle")).to_have_text("Pins")
        await expect(shown(b, "Earnings beat").locator(".pin-mark")).to_have_count(0)

        for person in (alice, bob):
            assert person.origins() == {server.url}, person.urls
            assert person.errors == [] and person.console == []


async def test_pins_and_threads_in_a_private_room(server: ServerProcess) -> None:
    """An owner pins from the message, a member sees the pin but gets no Pin button; the
    autocomplete offers the room's members; user text in quotes, threads and the pins list
    stays text; every control of the open panels has a label (on a phone-sized screen too)."""
    markup = 'Agenda <img src=x onerror="document.title=1"> <b>Monday</b>'
    async with ClientPool() as clients:
        carol = await clients.connect(server.url, token("carol", name="Carol"))
        desk = await carol.ok("create_room", {"kind": "private", "title": "Desk", "members": ["dave"]})
        agenda = await carol.ok("message", {"room": desk["room"], "text": markup})
        async with chromium() as browser:
            owner = await visitor(browser)
            member = await visitor(browser, viewport={"width": 390, "height": 844})
            o, m = owner.page, member.page
            await sign_in(o, server.url, token("carol", name="Carol"))
            await sign_in(m, server.url, token("dave", name="Dave"))
            for page in (o, m):
                await page.locator(".room-button", has_text="Desk").click()
                await expect(page.locator("#room-title")).to_have_text("Desk")
            await shown(o, "Agenda").get_by_role("button", name="Pin", exact=True).click()
            await expect(shown(m, "Agenda").locator(".pin-mark")).to_have_text("📌 pinned")
            await expect(m.locator("#pins-toggle")).to_have_text("Pins (1)")
            assert await m.get_by_role("button", name="Pin", exact=True).count() == 0
            await expect(o.get_by_role("button", name="Unpin", exact=True)).to_have_count(1)
            await m.locator("#pins-toggle").click()
            await expect(m.locator("#pin-list .pin-text")).to_have_text([markup])
            # The autocomplete lists the room's members (from `members`), not other users.
            await m.locator("#text").press_sequentially("@")
            await expect(m.locator("#mention-list [role=option]")).to_have_text(["Carol@carol"])
            await m.locator("#text").press("Escape")
            await expect(m.locator("#mention-list")).to_be_hidden()
            await m.locator("#text").fill("")
            # A reply quoting the markup, and its thread: text, never elements.
            reply = {"room": desk["room"], "text": "moved to 10:00", "reply_to": agenda["message"]["id"]}
            await carol.ok("message", reply)
            await expect(shown(m, "moved to 10:00").locator(".quote-text")).to_have_text(markup)
            await shown(m, "Agenda").get_by_role("button", name="1 reply: open the thread").click()
            await expect(m.locator("#thread-panel li.msg .text")).to_have_text([markup, "moved to 10:00"])
            assert await m.evaluate(UNLABELLED) == []
            for page in (o, m):
                assert await page.locator("main img, main b").count() == 0
                assert await page.title() == "ST00CK chat"
            await m.locator("#thread-close").click()
            await expect(m.locator("#thread-panel")).to_be_hidden()
            await expect(
                shown(m, "Agenda").get_by_role("button", name="1 reply: open the thread")
            ).to_be_focused()
        for person in (owner, member):
            assert person.origins() == {server.url}, person.urls
            assert person.errors == [] and person.console == []


async def test_mentions_while_signed_out_show_as_a_badge(server: ServerProcess) -> None:
    """my_rooms' unread_mentions: mentioned while away, the user signs in to an `@2` badge
    on the room, which goes once the room is opened and read."""
    room = "stock:LATER"
    async with ClientPool() as clients:
        erin = await clients.connect(server.url, token("erin", name="Erin"))
        await erin.ok("join", {"room": room})  # listed in her my_rooms from now on
        await erin.disconnect()
        frank = await clients.connect(server.url, token("frank", name="Frank"))
        await frank.ok("join", {"room": room})
        for text in ("@erin first", "no mention", "@erin second"):
            mentions = ["erin"] if "@erin" in text else []
            await frank.ok("message", {"room": room, "text": text, "mentions": mentions})
    async with chromium() as browser:
        person = await visitor(browser)
        page = person.page
        await sign_in(page, server.url, token("erin", name="Erin"))
        entry = page.locator(".room-button", has_text=room)
        await expect(entry.locator(".mention-badge")).to_have_text("@2")
        await expect(entry).to_have_attribute("aria-label", re.compile("2 mentions of you"))
        await entry.click()
        await expect(shown(page, "second")).to_have_class("msg mentions-me")
        await expect(page.locator("li.msg.mentions-me")).to_have_count(2)
        await expect(entry.locator(".mention-badge")).to_have_count(0)
    assert person.errors == [] and person.console == []
