"""chatsvc.chat.crossposts with in-memory doubles: the room stream's observer sees other
replicas' posts (not its own, not duplicates), feeds them only for local users, and slow
mode and the duplicate rule then refuse as if the post had been made here."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat.crossposts import StreamPosts
from chatsvc.chat.service import Draft
from chatsvc.chat.slowmode import SlowModes
from chatsvc.errors import SlowMode, Spam
from chatsvc.model.messages import Message, RoomEvent
from chatsvc.settings import ModeSettings
from chatsvc.store.memory import MemoryStore
from chatsvc.store.sqlite import SqliteStore
from tests.chat.log_double import Topic, settle
from tests.chat.test_spam import ALICE, MID, make
from tests.chat.test_streams import ROOM, Replica, replicas

__all__ = ["replicas"]  # test_streams' fixtures: two replicas on one in-memory topic


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def posted(
    at: float, *, user: str = "alice", room: str = ROOM, text: str = "hello", cmid: str | None = None
) -> Message:
    return Message("01J0", room, user, user.title(), text, int(at * 1000), client_msg_id=cmid)


class Seen:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.local: list[bool] = []
        self.modes: list[tuple[str, int]] = []

    def seen(self, message: Message, *, local: bool) -> None:
        self.messages.append(message)
        self.local.append(local)

    def announced(self, room: str, seconds: int) -> None:
        self.modes.append((room, seconds))


async def test_the_stream_shows_other_replicas_posts_as_foreign_and_duplicates_not_at_all(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    _topic, (r1, _), (r2, _) = replicas
    views: dict[str, list[tuple[str, bool]]] = {"r1": [], "r2": []}
    r1.watch_stream(lambda m, here: views["r1"].append((getattr(m, "text", m.kind), here)))
    r2.watch_stream(lambda m, here: views["r2"].append((getattr(m, "text", m.kind), here)))
    await r1.post(Draft(ROOM, ALICE, "one", "c1"))
    await r2.post(Draft(ROOM, ALICE, "two", None))
    retried, created = await r2.post(Draft(ROOM, ALICE, "one", "c1"))  # r1's, acked the original
    assert not created and retried.text == "one"
    await r1.log_and_deliver("room_mode", "room_mode", ROOM, "", {"room": ROOM, "slow_mode_seconds": 5})
    await settle()
    assert views == {
        "r1": [("one", True), ("two", False), ("room_mode", False)],
        "r2": [("one", False), ("two", True), ("room_mode", False)],
    }


def test_stream_posts_feed_other_replicas_user_posts_and_every_room_mode_change() -> None:
    slow, spam = Seen(), Seen()
    feed = StreamPosts(lambda user: user == "alice", slow, spam)  # type: ignore[arg-type]
    feed(posted(1.0), False)
    feed(posted(1.0, user="bob"), False)  # no socket here: each rule decides
    feed(posted(2.0), True)  # let through here: already counted
    feed(replace(posted(3.0), kind="system"), False)  # an admin Publish is not slowed
    for rule in (slow, spam):
        assert [(m.user_id, m.created_at_ms) for m in rule.messages] == [("alice", 1000), ("bob", 1000)]
        assert rule.local == [True, False]
    feed(RoomEvent("e1", ROOM, "room_mode", "", {"room": ROOM, "slow_mode_seconds": 30}), False)
    feed(RoomEvent("e2", ROOM, "room_mode", "", {"room": ROOM, "slow_mode_seconds": "x"}), False)
    feed(RoomEvent("e3", ROOM, "pinned", "m1", {"room": ROOM}), False)
    assert slow.modes == [(ROOM, 30), (ROOM, 0)] and spam.modes == []


async def slow(seconds: int) -> tuple[SlowModes, Clock]:
    store = MemoryStore()
    await store.open()
    await store.set_slow_mode(ROOM, seconds)
    clock = Clock()
    return SlowModes(None, store, ModeSettings(), None, clock=clock), clock  # type: ignore[arg-type]


async def test_slow_mode_counts_a_post_seen_from_another_replica() -> None:
    modes, clock = await slow(10)
    modes.seen(posted(clock.now - 4), local=True)
    with pytest.raises(SlowMode) as caught:
        await modes.check(ROOM, ALICE)
    assert caught.value.to_wire()["retry_after_ms"] == 6000
    await modes.check(ROOM, Identity("bob", "Bob"))  # another user is not slowed by it
    modes.seen(posted(clock.now - 9, room="other"), local=True)
    modes.seen(posted(clock.now - 30), local=True)  # older than what is known: changes nothing
    clock.now += 6
    await modes.check(ROOM, ALICE)  # the interval is over; this post starts the next one
    modes.seen(posted(clock.now - 1), local=True)  # a record of an earlier post, applied late
    clock.now += 1
    with pytest.raises(SlowMode) as again:
        await modes.check(ROOM, ALICE)
    assert again.value.to_wire()["retry_after_ms"] == 9000


async def test_other_users_posts_are_kept_only_in_rooms_seen_slowed_here() -> None:
    modes, clock = await slow(10)
    modes.seen(posted(clock.now - 1), local=False)  # the room's mode not read here yet
    await modes.check("elsewhere", ALICE)  # reads an unslowed room: nothing kept for it
    modes.seen(posted(clock.now - 1, room="elsewhere"), local=False)
    await modes.check(ROOM, ALICE)
    assert not modes._last_post.get(("elsewhere", "alice")), "an unslowed room keeps nothing"
    # ROOM was read as slowed: bob posted through another replica, then reconnects here.
    modes.seen(posted(clock.now - 2, user="bob"), local=False)
    with pytest.raises(SlowMode) as caught:
        await modes.check(ROOM, Identity("bob", "Bob"))
    assert caught.value.to_wire()["retry_after_ms"] == 8000


async def test_a_room_mode_record_says_at_once_which_rooms_keep_other_users_posts() -> None:
    modes, clock = await slow(10)
    modes.announced("hot", 5)  # read from the stream: no store read needed to know
    modes.seen(posted(clock.now - 1, user="bob", room="hot"), local=False)
    assert ("hot", "bob") in modes._last_post
    modes.announced("hot", 0)
    modes.seen(posted(clock.now - 1, user="carol", room="hot"), local=False)
    assert ("hot", "carol") not in modes._last_post
    # The cached mode is dropped: the next post re-reads the room's mode from the store.
    await modes.check(ROOM, ALICE)
    await modes._store.set_slow_mode(ROOM, 0)
    modes.announced(ROOM, 0)
    await modes.check(ROOM, ALICE)  # within the 10 s, but slow mode is off now


async def test_a_post_from_a_replica_whose_clock_runs_ahead_waits_at_most_the_interval() -> None:
    modes, clock = await slow(10)
    modes.seen(posted(clock.now + 5), local=True)
    with pytest.raises(SlowMode) as caught:
        await modes.check(ROOM, ALICE)
    assert caught.value.to_wire()["retry_after_ms"] == 10_000


async def test_the_duplicate_rule_counts_a_text_seen_from_another_replica() -> None:
    spam, _, _, clock = await make(duplicate_window_seconds=60)
    text = "buy $GME now, to the moon"
    spam.seen(posted(clock.now - 10, room="other", text=text, cmid="c1"), local=True)
    with pytest.raises(Spam) as caught:
        await spam.screen(ROOM, ALICE, text.upper() + "!!", message_id=MID)
    assert caught.value.rule == "duplicate"
    # The retry of that very message (its room and client_msg_id) is not a duplicate.
    assert await spam.screen("other", ALICE, text, message_id=MID, client_msg_id="c1") == text
    # Another user, a text seen outside the window, a too-short text: nothing refused.
    await spam.screen(ROOM, Identity("bob", "Bob"), text, message_id=MID)
    spam.seen(posted(clock.now - 61, text="an old text from long ago"), local=True)
    await spam.screen(ROOM, ALICE, "an old text from long ago", message_id=MID)
    spam.seen(posted(clock.now, text="ok"), local=True)
    await spam.screen(ROOM, ALICE, "ok", message_id=MID)


async def test_a_text_seen_twice_is_kept_once_and_nothing_is_kept_with_the_rule_off() -> None:
    spam, _, _, clock = await make(duplicate_window_seconds=60)
    spam.seen(posted(clock.now, text="the same words again", user="bob"), local=False)
    assert spam.tracked_users == 0, "a user with no socket here: nothing hashed, nothing kept"
    for _ in range(3):
        spam.seen(posted(clock.now, text="the same words again"), local=True)
    assert len(spam._recent["alice"]) == 1
    off, _, _, clock = await make(duplicate_window_seconds=0)
    off.seen(posted(clock.now, text="the same words again"), local=True)
    assert off.tracked_users == 0
