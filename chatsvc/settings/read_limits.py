"""Reading the bounds on what clients do: limits (``CHATSVC_MAX_*``, rate limits, catch-up and
recovery), the spam filters (``CHATSVC_SPAM_*``) and slow/surge mode, cashtags and sentiment."""

from __future__ import annotations

import re

from chatsvc.settings.blocklist import load_blocklist
from chatsvc.settings.model import CASHTAG_PATTERN, Limits, ModeSettings, SpamSettings
from chatsvc.settings.reader import EnvReader, SettingsError


def read_limits(env: EnvReader) -> Limits:
    """The bounds on everything a client controls (``CHATSVC_MAX_*``, rate limit, catch-up, recovery)."""
    rate = env.number("CHATSVC_RATE_LIMIT_PER_SECOND", 5.0, minimum=0.1)
    return Limits(
        message_bytes=env.integer("CHATSVC_MAX_MESSAGE_BYTES", 4096, minimum=1, maximum=1_000_000),
        reaction_kinds=env.integer("CHATSVC_MAX_REACTION_KINDS", 20, minimum=1, maximum=1000),
        mentions_per_message=env.integer("CHATSVC_MAX_MENTIONS", 10, minimum=0, maximum=100),
        pins_per_room=env.integer("CHATSVC_MAX_PINS", 50, minimum=1, maximum=1000),
        messages_per_second=rate,
        burst=env.integer("CHATSVC_RATE_LIMIT_BURST", 10, minimum=1),
        rooms_per_connection=env.integer("CHATSVC_MAX_ROOMS_PER_CONNECTION", 50, minimum=1),
        connections_per_user=env.integer("CHATSVC_MAX_CONNECTIONS_PER_USER", 20, minimum=1),
        connections_per_ip=env.integer("CHATSVC_MAX_CONNECTIONS_PER_IP", 0, minimum=0),
        http_buffer_bytes=env.integer("CHATSVC_MAX_HTTP_BUFFER_BYTES", 65536, minimum=1024),
        queued_packets_max=env.integer("CHATSVC_MAX_QUEUED_PACKETS", 1000, minimum=16, maximum=1_000_000),
        pending_events_max=env.integer("CHATSVC_MAX_PENDING_EVENTS", 64, minimum=1, maximum=10_000),
        catchup_max=env.integer("CHATSVC_CATCHUP_MAX", 500, minimum=1, maximum=10_000),
        catchup_overlap_ms=env.integer("CHATSVC_CATCHUP_OVERLAP_MS", 2000, minimum=0, maximum=60_000),
        # A day at most: room events (the edit/delete log replays read) are kept that long.
        recovery_window_seconds=env.integer("CHATSVC_RECOVERY_WINDOW", 120, minimum=0, maximum=86_400),
        recovery_max_replay=env.integer("CHATSVC_RECOVERY_MAX_REPLAY", 500, minimum=1, maximum=10_000),
        members_per_room=env.integer("CHATSVC_MAX_MEMBERS_PER_ROOM", 1000, minimum=2, maximum=100_000),
        rooms_per_user=env.integer("CHATSVC_MAX_ROOMS_PER_USER", 500, minimum=1, maximum=100_000),
        dms_per_minute=env.integer("CHATSVC_MAX_DMS_PER_MINUTE", 20, minimum=1, maximum=10_000),
        blocks_per_user=env.integer("CHATSVC_MAX_BLOCKS_PER_USER", 1000, minimum=1, maximum=100_000),
    )


def read_spam(env: EnvReader) -> SpamSettings:
    """The spam filters (chatsvc.chat.spam); the blocklist file is read and checked here."""
    action = env.text("CHATSVC_SPAM_BLOCKLIST_ACTION", "reject").lower()
    if action not in {"reject", "mask"}:
        raise SettingsError("CHATSVC_SPAM_BLOCKLIST_ACTION", f"expected reject or mask, got {action!r}")
    path = env.readable_file("CHATSVC_SPAM_BLOCKLIST_FILE")
    try:
        blocklist = load_blocklist(path) if path is not None else ()
    except (OSError, ValueError) as exc:
        raise SettingsError("CHATSVC_SPAM_BLOCKLIST_FILE", str(exc)) from None
    return SpamSettings(
        duplicate_window_seconds=env.integer(
            "CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS", 60, minimum=0, maximum=86_400
        ),
        duplicate_min_chars=env.integer("CHATSVC_SPAM_DUPLICATE_MIN_CHARS", 8, minimum=1, maximum=10_000),
        max_links=env.integer("CHATSVC_SPAM_MAX_LINKS", 3, minimum=0, maximum=1000),
        link_min_token_age_minutes=env.integer(
            "CHATSVC_SPAM_LINK_MIN_TOKEN_AGE_MINUTES", 0, minimum=0, maximum=525_600
        ),
        max_mentions=env.integer("CHATSVC_SPAM_MAX_MENTIONS", 5, minimum=0, maximum=100),
        blocklist=blocklist,
        blocklist_action=action,
        tracked_users=env.integer("CHATSVC_SPAM_TRACKED_USERS", 10_000, minimum=1, maximum=10_000_000),
    )


def read_modes(env: EnvReader) -> ModeSettings:
    """Slow and surge mode, the cashtag pattern (compiled here to check it) and sentiment events."""
    pattern = env.text("CHATSVC_CASHTAG_PATTERN", CASHTAG_PATTERN)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise SettingsError("CHATSVC_CASHTAG_PATTERN", f"not a regular expression: {exc}") from None
    if len(pattern) > 500 or compiled.groups > 1:
        raise SettingsError("CHATSVC_CASHTAG_PATTERN", "at most 500 characters and one capturing group")
    return ModeSettings(
        slow_mode_max_seconds=env.integer("CHATSVC_SLOW_MODE_MAX", 3600, minimum=1, maximum=86_400),
        surge_rate=env.number("CHATSVC_SURGE_RATE", 10.0, minimum=0.0),
        surge_window_seconds=env.integer("CHATSVC_SURGE_WINDOW", 10, minimum=1, maximum=3600),
        surge_slow_mode_seconds=env.integer("CHATSVC_SURGE_SLOW_MODE", 5, minimum=1, maximum=3600),
        cashtag_pattern=pattern,
        tickers_per_message=env.integer("CHATSVC_MAX_TICKERS", 10, minimum=0, maximum=100),
        sentiment_event_ms=env.integer("CHATSVC_SENTIMENT_EVENT_MS", 3000, minimum=500, maximum=60_000),
    )
