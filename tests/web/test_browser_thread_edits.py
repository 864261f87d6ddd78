"""Editing and deleting from inside the thread panel (issue 27 polish), as in the room view:
the author edits and deletes their reply there, a room's moderator deletes someone else's,
and the other user sees each change live in both the thread panel and the room; a reply
older than the room's loaded history (only the thread shows it) follows deletes too. Two
users in two Chromium contexts; not one request to another origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from tests.support.browser import PAGE_WAIT_MS, chromium, visitor
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token
from tests.web.test_browser_keyboard import UNLABELLED
from tests.web.test_browser_messages import join, send, shown, sign_in

ROOM = "stock:THRD"
IN_THREAD_DELETED = "#thread-messages li.msg.deleted"
OPEN_1 = "1 reply: open the thread"
OLD = "stock:OLDR"

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("thread-edits"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def in_thread(page: Page, text: str) -> Locator:
    """The message of the open thread panel whose own text has ``text``."""
    return page.locator("#thread-messages li.msg").filter(has=page.locator("p.text", has_text=text))


async def test_author_edits_and_deletes_in_the_thread_seen_live(server: ServerProcess) -> None:
    async with chromium() as browser:
        alice, bob = await visitor(browser), await visitor(browser)
        a, b = alice.page, bob.page
        await sign_in(a, server.url, token("alice", name="Alice"))
        await sign_in(b, server.url, token("bob", name="Bob"))
        await join(a, ROOM)
        await join(b, ROOM)
        await send(b, "Guidance raised")
        await shown(a, "Guidance raised").get_by_role("button", name="Reply").click()
        await send(a, "Which segment?")
        for page in (a, b):
            await shown(page, "Guidance raised").get_by_role("button", name=OPEN_1).click()
            await expect(page.locator("#thread-messages li.msg .text")).to_have_text(
                ["Guidance raised", "Which segment?"]
            )

        # Only the author is offered Edit and Delete (Bob is no moderator of a public room).
        mine, theirs = in_thread(a, "Which segment?"), in_thread(b, "Which segment?")
        await expect(mine.get_by_role("button", name="Edit", exact=True)).to_have_count(1)
        await expect(mine.get_by_role("button", name="Delete", exact=True)).to_have_count(1)
        await expect(theirs.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
        await expect(theirs.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
        await expect(theirs.get_by_role("button", name="Delete Alice's message")).to_have_count(0)
        await expect(in_thread(a, "Guidance raised").get_by_role("button", name="Edit")).to_have_count(0)

        # Escape cancels the edit only: the panel stays open, the focus back on Edit.
        edit = mine.get_by_role("button", name="Edit", exact=True)
        await edit.click()
        field = a.locator("#thread-panel .edit-input")
        await expect(field).to_be_focused()
        await expect(field).to_have_value("Which segment?")
        await field.fill("never sent")
        await field.press("Escape")
        await expect(a.locator("#thread-panel")).to_be_visible()
        await expect(a.locator("#thread-panel .edit-input")).to_have_count(0)
        await expect(mine.locator(".text")).to_have_text("Which segment?")
        await expect(edit).to_be_focused()
        assert await b.locator("li.msg", has_text="never sent").count() == 0

        # Enter saves: both users see the new text, marked edited, in the thread and the room.
        await edit.press("Enter")
        await expect(field).to_be_focused()
        await field.fill("Which segment: cloud or devices?")
        await field.press("Enter")
        for page in (a, b):
            for where in (in_thread(page, "cloud or devices"), shown(page, "cloud or devices")):
                await expect(where).to_have_count(1)
                await expect(where.locator(".edited")).to_have_text("edited")
            await expect(page.locator("li.msg .text", has_text="Which segment?")).to_have_count(0)
        edited = in_thread(a, "cloud or devices")
        await expect(edited.get_by_role("button", name="Edit", exact=True)).to_be_focused()
        assert await a.evaluate(UNLABELLED) == []

        # Delete from the thread: gone for both, in the thread and the room; the parent's
        # thread still opens with the reply shown deleted.
        await in_thread(a, "cloud or devices").get_by_role("button", name="Delete", exact=True).click()
        for page in (a, b):
            await expect(page.locator(f"{IN_THREAD_DELETED} .text")).to_have_text(["message deleted"])
            await expect(page.locator(".timeline:not([hidden]) li.msg.deleted .text")).to_have_text(
                ["message deleted"]
            )
            await expect(page.locator("li.msg", has_text="cloud or devices")).to_have_count(0)
        # Bob deletes his own parent from inside the thread: Alice sees it in both places.
        await in_thread(b, "Guidance raised").get_by_role("button", name="Delete", exact=True).click()
        parent = a.locator("#thread-messages li.thread-parent")
        await expect(parent).to_have_class("msg deleted thread-parent")
        await expect(a.locator(".timeline:not([hidden]) li.msg.deleted")).to_have_count(2)
        # Its text does not live on in its reply's quote (the thread's and the room's).
        await expect(a.locator("li.msg .quote-text")).to_have_text(["message deleted", "message deleted"])
        await expect(a.locator("li.msg", has_text="Guidance raised")).to_have_count(0)
        for person in (alice, bob):
            assert person.origins() == {server.url}, person.urls
            assert person.errors == [] and person.console == []


async def test_moderator_deletes_a_members_reply_in_the_thread(server: ServerProcess) -> None:
    """In a private room the owner is offered Delete (not Edit) on a member's messages, in the
    thread panel and the room, and the server takes it; the member is offered neither on the
    owner's messages."""
    async with ClientPool() as clients:
        carol = await clients.connect(server.url, token("carol", name="Carol"))
        dave = await clients.connect(server.url, token("dave", name="Dave"))
        desk = await carol.ok("create_room", {"kind": "private", "title": "Desk", "members": ["dave"]})
        room = desk["room"]
        plan = await carol.ok("message", {"room": room, "text": "Q3 plan"})
        parent = plan["message"]["id"]
        await dave.ok("message", {"room": room, "text": "draft attached", "reply_to": parent})
        await dave.ok("message", {"room": room, "text": "and the budget", "reply_to": parent})
        async with chromium() as browser:
            owner, member = await visitor(browser), await visitor(browser)
            o, m = owner.page, member.page
            await sign_in(o, server.url, token("carol", name="Carol"))
            await sign_in(m, server.url, token("dave", name="Dave"))
            for page in (o, m):
                await page.locator(".room-button", has_text="Desk").click()
                await expect(page.locator("#room-title")).to_have_text("Desk")
                await shown(page, "Q3 plan").get_by_role("button", name="2 replies: open the thread").click()
                await expect(page.locator("#thread-messages li.msg")).to_have_count(3)

            reply = in_thread(o, "draft attached")
            await expect(reply.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
            in_room = shown(o, "draft attached")
            await expect(in_room.get_by_role("button", name="Delete Dave's message")).to_have_count(1)
            for_member = in_thread(m, "Q3 plan")
            await expect(for_member.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
            await expect(for_member.get_by_role("button", name="Delete Carol's message")).to_have_count(0)
            own = in_thread(m, "draft attached")
            await expect(own.get_by_role("button", name="Delete", exact=True)).to_have_count(1)

            await reply.get_by_role("button", name="Delete Dave's message").click()
            for page in (o, m):
                await expect(page.locator(f"{IN_THREAD_DELETED} .text")).to_have_text(["message deleted"])
                await expect(page.locator("li.msg", has_text="draft attached")).to_have_count(0)
                await expect(page.locator(".timeline:not([hidden]) li.msg.deleted")).to_have_count(1)
            # And from the room view too: the thread follows.
            await shown(o, "and the budget").get_by_role("button", name="Delete Dave's message").click()
            for page in (o, m):
                await expect(page.locator(IN_THREAD_DELETED)).to_have_count(2)
                await expect(page.locator("li.msg", has_text="and the budget")).to_have_count(0)
            history = await dave.ok("history", {"room": room})
            # The server took the moderator's deletes: only the owner's message is left.
            left = [msg["text"] for msg in history["messages"] if not msg.get("deleted")]
            assert left == ["Q3 plan"] and len(history["messages"]) == 3
            for person in (owner, member):
                assert person.origins() == {server.url}, person.urls
                assert person.errors == [] and person.console == []


async def test_a_reply_older_than_the_rooms_history_follows_deletes(server: ServerProcess) -> None:
    """The room shows its newest 30 messages; the thread opened from a quote shows older
    replies the room does not have. Deleting one's own such reply from the panel, and
    another user's delete of one, both show there."""
    async with ClientPool() as clients:
        erin = await clients.connect(server.url, token("erin", name="Erin"))
        gus = await clients.connect(server.url, token("gus", name="Gus"))
        for client in (erin, gus):
            await client.ok("join", {"room": OLD})
        first = await erin.ok("message", {"room": OLD, "text": "Thread starter"})
        parent = first["message"]["id"]
        await gus.ok("message", {"room": OLD, "text": "gus early reply", "reply_to": parent})
        early = await erin.ok("message", {"room": OLD, "text": "erin early reply", "reply_to": parent})
        for n in range(32):  # bounded: pushes both early replies out of the newest page
            await erin.ok("message", {"room": OLD, "text": f"later reply {n}", "reply_to": parent})
        async with chromium() as browser:
            person = await visitor(browser)
            page = person.page
            await sign_in(page, server.url, token("gus", name="Gus"))
            await join(page, OLD)
            await expect(shown(page, "later reply 31")).to_have_count(1)
            await expect(page.locator("li.msg", has_text="early reply")).to_have_count(0)
            await shown(page, "later reply 31").locator("button.quote").click()
            await expect(page.locator("#thread-messages li.msg")).to_have_count(35)
            await in_thread(page, "gus early reply").get_by_role("button", name="Delete", exact=True).click()
            await expect(page.locator(f"{IN_THREAD_DELETED} .text")).to_have_text(["message deleted"])
            await erin.ok("delete", {"room": OLD, "id": early["message"]["id"]})
            await expect(page.locator(IN_THREAD_DELETED)).to_have_count(2)
            await expect(page.locator("#thread-messages li.msg", has_text="early reply")).to_have_count(0)
            await expect(page.locator("#thread-panel")).to_be_visible()
        assert person.origins() == {server.url}, person.urls
        assert person.errors == [] and person.console == []
