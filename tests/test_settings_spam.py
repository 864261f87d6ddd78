"""Settings.from_env for the spam filters (issue 25): defaults, bounds, the blocklist file
read and checked at start-up (the error names the variable, and the line)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatsvc.settings import Settings, SettingsError, SpamSettings
from tests.support.servers import TEST_JWT_SECRET


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    return {"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, "CHATSVC_DATA_DIR": str(tmp_path / "data")}


def error_for(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    return info.value


def test_defaults(base: dict[str, str]) -> None:
    spam = Settings.from_env(base).spam
    assert spam == SpamSettings()
    assert (spam.duplicate_window_seconds, spam.max_links, spam.max_mentions) == (60, 3, 5)
    assert (spam.link_min_token_age_minutes, spam.blocklist, spam.blocklist_action) == (0, (), "reject")


def test_every_threshold_is_a_setting(base: dict[str, str], tmp_path: Path) -> None:
    blocklist = tmp_path / "words.txt"
    blocklist.write_text("# words\nscam\nre:pump+\n")
    spam = Settings.from_env(
        {
            **base,
            "CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS": "0",
            "CHATSVC_SPAM_DUPLICATE_MIN_CHARS": "3",
            "CHATSVC_SPAM_MAX_LINKS": "0",
            "CHATSVC_SPAM_LINK_MIN_TOKEN_AGE_MINUTES": "30",
            "CHATSVC_SPAM_MAX_MENTIONS": "1",
            "CHATSVC_SPAM_BLOCKLIST_FILE": str(blocklist),
            "CHATSVC_SPAM_BLOCKLIST_ACTION": "MASK",
            "CHATSVC_SPAM_TRACKED_USERS": "7",
        }
    ).spam
    assert spam.duplicate_window_seconds == 0 and spam.duplicate_min_chars == 3
    assert spam.max_links == 0 and spam.link_min_token_age_minutes == 30 and spam.max_mentions == 1
    assert spam.blocklist_action == "mask" and spam.tracked_users == 7
    assert len(spam.blocklist) == 2 and re.search(spam.blocklist[0], "a scam!")
    described = Settings.from_env({**base, "CHATSVC_SPAM_BLOCKLIST_FILE": str(blocklist)}).describe()
    # The start-up log line says how many entries, not the patterns themselves.
    assert described["spam"]["blocklist"] == "2 entries" and described["spam"]["max_links"] == 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("CHATSVC_SPAM_BLOCKLIST_ACTION", "drop", "expected reject or mask"),
        ("CHATSVC_SPAM_MAX_LINKS", "-1", "must be 0..1000"),
        ("CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS", "86401", "must be 0..86400"),
        ("CHATSVC_SPAM_TRACKED_USERS", "0", "must be 1..10000000"),
        ("CHATSVC_SPAM_BLOCKLIST_FILE", "/nonexistent/words.txt", "file not found"),
    ],
)
def test_bad_values_name_the_variable(base: dict[str, str], name: str, value: str, problem: str) -> None:
    error = error_for({**base, name: value})
    assert error.variable == name and problem in str(error)


def test_a_bad_blocklist_fails_start_up_naming_the_line(base: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("fine\nre:[unclosed\n")
    error = error_for({**base, "CHATSVC_SPAM_BLOCKLIST_FILE": str(path)})
    assert error.variable == "CHATSVC_SPAM_BLOCKLIST_FILE" and "line 2" in str(error)


def test_readme_documents_every_spam_variable() -> None:
    root = Path(__file__).resolve().parents[1]
    source = "".join(p.read_text() for p in sorted((root / "chatsvc" / "settings").glob("*.py")))
    readme = (root / "README.md").read_text()
    names = set(re.findall(r'"(CHATSVC_SPAM_[A-Z_]+)"', source))
    assert len(names) == 8
    assert {n for n in names if f"`{n}`" not in readme} == set()
