"""chatsvc.chat.spam with in-memory doubles: each rule at and just past its threshold, the
blocklist's mask, the duplicate window's memory bound."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat import spam
from chatsvc.chat.spam import FLAGS_PER_USER_PER_MINUTE, SpamFilter, fingerprint, links
from chatsvc.errors import Spam
from chatsvc.metrics import Metrics
from chatsvc.settings import SpamSettings, load_blocklist
from chatsvc.store.memory import MemoryStore

ALICE = Identity("alice", "Alice", issued_at=1_000.0)
MID = "01J00000000000000000000000"


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


async def make(
    tmp_path: Path | None = None, blocklist: str = "", **settings: object
) -> tuple[SpamFilter, MemoryStore, Metrics, Clock]:
    store = MemoryStore()
    await store.open()
    words: tuple[str, ...] = ()
    if tmp_path is not None:
        path = tmp_path / "blocklist.txt"
        path.write_text(blocklist)
        words = load_blocklist(path)
    metrics, clock = Metrics(), Clock()
    spam = SpamFilter(replace(SpamSettings(), blocklist=words, **settings), metrics, store, clock=clock)  # type: ignore[arg-type]
    return spam, store, metrics, clock


def wide(ascii_text: str) -> str:
    """The full-width form of ASCII letters (NFKC folds them back)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


def refused(metrics: Metrics, rule: str) -> float:
    return metrics.spam_refused.labels(rule)._value.get()  # type: ignore[no-any-return]


async def rule_of(spam: SpamFilter, text: str, **kw: object) -> str:
    with pytest.raises(Spam) as caught:
        await spam.screen("lobby", kw.pop("author", ALICE), text, message_id=MID, **kw)  # type: ignore[arg-type]
    wire = caught.value.to_wire()
    assert wire["code"] == "spam" and wire["rule"] in wire["message"]
    return caught.value.rule


def test_fingerprints_ignore_case_spacing_punctuation_and_invisible_characters() -> None:
    assert fingerprint("BUY  $GME now!!! 🚀") == fingerprint("buy gme\u200b now") == "buy gme now"
    assert fingerprint(wide("buy") + " " + wide("GME")) == "buy gme"  # full-width letters (NFKC)
    assert fingerprint("buy gme 1") != fingerprint("buy gme 2")


def test_links_counts_urls_www_hosts_and_bare_domains_not_cashtags() -> None:
    assert links("see https://a.example/x and http://b.example") == 2
    assert links("www.pump.example and pump.xyz/now and PUMP.IO") == 3
    assert links(wide("https") + "://full.width") == 1
    assert links("$BRK.B up 3.5% e.g. today, node.js fans") == 0


async def test_links_refused_past_the_maximum_not_at_it() -> None:
    spam, store, metrics, _ = await make(max_links=2)
    assert await spam.screen("lobby", ALICE, "a.com b.com", message_id=MID) == "a.com b.com"
    assert await rule_of(spam, "a.com b.com c.com") == "links"
    assert refused(metrics, "links") == 1
    [flag] = await store.list_flags("lobby", before=None, limit=5)
    assert (flag.rule, flag.action, flag.text, flag.user_id) == (
        "links",
        "rejected",
        "a.com b.com c.com",
        "alice",
    )


async def test_mentions_refused_past_the_maximum() -> None:
    spam, _, metrics, _ = await make(max_mentions=2)
    await spam.screen("lobby", ALICE, "hi all", message_id=MID, mentions=2)
    assert await rule_of(spam, "hi all!", mentions=3) == "mentions"
    assert refused(metrics, "mentions") == 1


async def test_links_from_a_young_token_refused_older_or_without_iat_pass() -> None:
    spam, _, _, clock = await make(link_min_token_age_minutes=10)
    young = replace(ALICE, issued_at=clock.now - 599)
    assert await rule_of(spam, "see pump.xyz", author=young) == "new_token_links"
    await spam.screen("lobby", young, "no link here", message_id=MID)  # only links need an age
    await spam.screen("lobby", replace(ALICE, issued_at=clock.now - 600), "see pump.xyz", message_id=MID)
    await spam.screen("lobby", replace(ALICE, issued_at=None), "see pump.xyz again", message_id=MID)
    off, _, _, clock = await make()
    await off.screen("lobby", replace(ALICE, issued_at=clock.now), "see pump.xyz", message_id=MID)


async def test_duplicates_within_the_window_across_rooms_refused() -> None:
    spam, store, metrics, clock = await make(duplicate_window_seconds=30)
    await spam.screen("a", ALICE, "Buy $GME now, it moons", message_id=MID)
    with pytest.raises(Spam) as caught:
        await spam.screen("b", ALICE, "buy gme NOW it moons!!", message_id=MID)
    assert caught.value.rule == "duplicate"
    # Another user, a short text, an edit: not duplicates.
    await spam.screen("b", Identity("bob", "Bob"), "Buy $GME now, it moons", message_id=MID)
    await spam.screen("a", ALICE, "ok ok", message_id=MID)
    await spam.screen("a", ALICE, "ok ok", message_id=MID)
    await spam.screen("a", ALICE, "Buy $GME now, it moons", message_id=MID, edit=True)
    clock.now += 30.5  # the window passed
    await spam.screen("c", ALICE, "Buy $GME now, it moons", message_id=MID)
    assert refused(metrics, "duplicate") == 1
    assert [f.room for f in await store.list_flags(None, before=None, limit=5)] == ["b"]


async def test_a_retry_with_the_same_client_msg_id_is_not_a_duplicate() -> None:
    spam, _, _, _ = await make()
    await spam.screen("a", ALICE, "my long message", message_id=MID, client_msg_id="c1")
    await spam.screen("a", ALICE, "my long message", message_id=MID, client_msg_id="c1")
    with pytest.raises(Spam):
        await spam.screen("a", ALICE, "my long message", message_id=MID, client_msg_id="c2")
    with pytest.raises(Spam):  # the same id in another room is another message
        await spam.screen("b", ALICE, "my long message", message_id=MID, client_msg_id="c1")


async def test_duplicate_memory_is_bounded_and_expires() -> None:
    spam, _, _, clock = await make(tracked_users=3, duplicate_window_seconds=10)
    for i in range(10):
        await spam.screen("a", Identity(f"u{i}", "U"), "a long enough text", message_id=MID)
    assert spam.tracked_users == 3
    # The least recently active user was forgotten: its repeat passes.
    await spam.screen("a", Identity("u0", "U"), "a long enough text", message_id=MID)
    clock.now += 11
    for i in range(3):
        await spam.screen("a", Identity(f"v{i}", "V"), f"another text {i}", message_id=MID)
    assert spam.tracked_users == 3


async def test_blocklist_reject_words_phrases_and_patterns(tmp_path: Path) -> None:
    spam, _, metrics, _ = await make(tmp_path, "# comment\n\nscam\nguaranteed  returns\nre:p+u+m+p+\n")
    assert await rule_of(spam, "this is a SCAM") == "blocklist"
    assert await rule_of(spam, "Guaranteed returns!") == "blocklist"
    assert await rule_of(spam, "to the moon, PUUMPP it") == "blocklist"
    assert await rule_of(spam, "s\u200bcam in disguise") == "blocklist", "zero-width inside"
    assert await rule_of(spam, wide("scam")) == "blocklist", "full-width letters"
    assert await spam.screen("lobby", ALICE, "scampi for lunch, guaranteed", message_id=MID) == (
        "scampi for lunch, guaranteed"
    ), "whole words only"
    assert refused(metrics, "blocklist") == 5


async def test_blocklist_mask_stars_the_words_and_flags_the_message(tmp_path: Path) -> None:
    spam, store, metrics, _ = await make(tmp_path, "scam\nre:pump\\w*\n", blocklist_action="mask")
    assert await spam.screen("lobby", ALICE, "A Scam! pumpers everywhere", message_id=MID) == (
        "A ****! ******* everywhere"
    )
    assert metrics.spam_masked._value.get() == 1
    [flag] = await store.list_flags("lobby", before=None, limit=5)
    assert (flag.action, flag.message_id, flag.text) == ("masked", MID, "A Scam! pumpers everywhere")
    # What cannot be starred in place is refused.
    assert await rule_of(spam, "a s\u200bcam") == "blocklist"
    assert await spam.screen("lobby", ALICE, "clean text", message_id=MID) == "clean text"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("re:(unclosed\n", "line 1: not a regular expression"),
        ("ok\nre:a*\n", "line 2: matches the empty text"),
        ("re:\\b\n", "line 1: matches the empty text"),
        ("re:x?\n", "line 1: matches the empty text"),
        ("x" * 300 + "\n", "longer than 256"),
        ("\n".join(f"w{i}" for i in range(1001)), "more than 1000 entries"),
    ],
)
def test_bad_blocklists_are_refused_naming_the_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bl.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem):
        load_blocklist(path)


def test_blocklist_size_and_encoding_bounds(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"#" * (64 * 1024 + 1))
    with pytest.raises(ValueError, match="larger than"):
        load_blocklist(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_blocklist(path)


async def test_a_flag_store_failure_keeps_the_verdict(caplog: pytest.LogCaptureFixture) -> None:
    spam, store, _, _ = await make(max_links=0)
    await store.aclose()  # every store call now fails
    assert await rule_of(spam, "see a.com") == "links"
    assert "could not record a links flag" in caplog.text and "a.com" not in caplog.text


async def test_flags_per_user_are_bounded_per_minute_refusals_are_not() -> None:
    spam, store, metrics, clock = await make(max_links=0)
    for i in range(FLAGS_PER_USER_PER_MINUTE + 5):
        assert await rule_of(spam, f"see a{i}.com") == "links"
    assert refused(metrics, "links") == FLAGS_PER_USER_PER_MINUTE + 5
    assert len(await store.list_flags("lobby", before=None, limit=100)) == FLAGS_PER_USER_PER_MINUTE
    await rule_of(spam, "see b.com", author=Identity("bob", "Bob"))  # another user has its own
    clock.now += 60
    await rule_of(spam, "see c.com")
    assert len(await store.list_flags("lobby", before=None, limit=100)) == FLAGS_PER_USER_PER_MINUTE + 2
    rendered = metrics.render().decode()
    assert 'chatsvc_spam_refused_total{rule="duplicate"} 0.0' in rendered, (
        "every rule's series from the start"
    )


def test_the_ascii_shortcuts_match_the_general_normalisation() -> None:
    # normalised() and fingerprint() take a shortcut for ASCII text; it must give exactly
    # what the per-character path gives (forced here by a non-ASCII tail that is then cut).
    samples = ["Buy $GME now!!!", "  ok  ", "a-b_c.d/e\tf\nG", "MiXeD 123 ~`!@#$%^&*()", "", "x" * 50]
    for text in samples:
        tail = "\u00e9"  # é: not ASCII, stable under NFKC and casefold, alphanumeric
        general_norm = spam.normalised(text + tail)[: -len(tail)]
        assert spam.normalised(text) == general_norm, text
        general_print = spam.fingerprint(text + " " + tail).removesuffix(tail).strip()
        assert spam.fingerprint(text) == general_print, text


@pytest.mark.parametrize(
    "text",
    [
        "hello world, this is a message of typical length",
        "http://localhost/pump",
        "HTTPS://EXAMPLE",
        "ftp://a",
        "see www.pump",
        "go to pump.xyz/now",
        "a.b.c.d is no host",
        "dots... but no links",
        "pump\uff0exyz",  # a full-width stop: NFKC makes it "."
        "colon: and // slashes apart",
        "x:/ /y",
        "$BRK.B is up",
        "",
    ],
)
def test_the_no_dot_no_scheme_shortcut_counts_links_as_the_regex(text: str) -> None:
    # _links() skips the regex when the text has neither "." nor "://": every alternative
    # of LINK needs one of them, so the count must be the regex's own.
    norm = spam.normalised(text)
    assert spam._links(norm) == len(spam.LINK.findall(norm)), text
    assert links(text) == len(spam.LINK.findall(norm)), text
