"""Identity: the rooms claim, roles and what others see."""

from __future__ import annotations

import pytest

from chatsvc.auth.identity import Identity


def test_no_rooms_claim_allows_every_room() -> None:
    assert Identity("u", "U").may_join("anything")


@pytest.mark.parametrize(
    ("room", "allowed"),
    [
        ("lobby", True),
        ("lobby2", False),
        ("stock:005930", True),
        ("stock:", True),
        ("stocks", False),
        ("news.kr", True),
        ("news", False),
    ],
)
def test_rooms_claim_names_and_prefixes(room: str, allowed: bool) -> None:
    identity = Identity("u", "U", room_patterns=("lobby", "stock:*", "news.*"))
    assert identity.may_join(room) is allowed


def test_empty_rooms_claim_allows_nothing() -> None:
    assert not Identity("u", "U", room_patterns=()).may_join("lobby")


def test_star_alone_allows_everything() -> None:
    assert Identity("u", "U", room_patterns=("*",)).may_join("lobby")


def test_admin_role_and_public_view() -> None:
    admin = Identity("a1", "Ann", roles=frozenset({"admin"}))
    assert admin.is_admin
    assert not Identity("u", "U", roles=frozenset({"moderator"})).is_admin
    assert admin.public() == {"id": "a1", "name": "Ann"}
