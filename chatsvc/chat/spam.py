"""Spam filters (issue 25): what a user's message must pass before it is stored.

Rules, each refusing with ack error ``spam`` whose ``rule`` field names it (counted in
``chatsvc_spam_refused_total{rule}`` and recorded as a flag for moderators, gRPC
``ListFlagged``), in this order:

* ``blocklist``: a word, phrase or pattern of ``CHATSVC_SPAM_BLOCKLIST_FILE``. With
  ``CHATSVC_SPAM_BLOCKLIST_ACTION=mask`` the matches are starred out instead and the
  message goes through (flagged ``masked``); a match found only in the normalised text
  (full-width letters, zero-width characters inside a word) cannot be starred in place and
  is refused.
* ``mentions``: more than ``CHATSVC_SPAM_MAX_MENTIONS`` users mentioned.
* ``links``: more than ``CHATSVC_SPAM_MAX_LINKS`` links.
* ``new_token_links``: any link from a token whose ``iat`` is younger than
  ``CHATSVC_SPAM_LINK_MIN_TOKEN_AGE_MINUTES`` (off at 0; a token without ``iat`` is not judged).
* ``duplicate``: the same normalised text (at least ``CHATSVC_SPAM_DUPLICATE_MIN_CHARS``
  letters and digits) from the same user within ``CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS``,
  in any room. A retry with the client_msg_id of the original is not a duplicate (the store
  answers it with the original). Cluster-wide, without a round trip on the send path (issue 25
  wants plain messages no slower): a text another replica let through is remembered here when
  this replica applies its record from the room stream (:meth:`SpamFilter.seen`, fed by
  chatsvc.chat.crossposts; kept only for users with a socket here, so a replica hashes no
  text of users it does not serve). Stale by one bus hop (a few ms): the same text posted on
  two replicas within it passes on both; a user who reconnects to another replica may repeat
  a text from before. A text masked by the blocklist is remembered as masked.

Edits pass the same rules except ``duplicate`` (an edit posts nothing new).

Memory: per user at most :data:`TEXTS_PER_USER` recent digests (8 bytes each, never the
text), for at most ``CHATSVC_SPAM_TRACKED_USERS`` users, least recently active dropped
first; windows that passed are dropped as users are touched.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from chatsvc.auth.identity import Identity
from chatsvc.errors import ChatError, Spam
from chatsvc.metrics import Metrics
from chatsvc.model.ids import MessageIdGenerator
from chatsvc.model.messages import Flag, Message
from chatsvc.settings import SpamSettings
from chatsvc.store.base import FlagStore

log = logging.getLogger(__name__)

#: Recent texts remembered per user (at the default rate limit, 5 a second, the window's
#: worth of a minute would be 300: the newest 64 are what a flood repeats).
TEXTS_PER_USER = 64
#: Expired users dropped per screened message (amortised expiry, no background loop).
EXPIRE_PER_CALL = 2
#: Flags recorded per user per minute: a flood of refusals (bounded by the rate limit, but
#: from many sockets) is counted in full but writes at most this many rows.
FLAGS_PER_USER_PER_MINUTE = 10

#: Top-level domains a bare host name (``pump.xyz/now``) must end in to count as a link;
#: URLs with a scheme and ``www.`` hosts always count.
LINK_TLDS = " ".join(
    (
        "com net org info biz io co me ly gg to app dev xyz top site online club shop store live link",
        "click win vip bet money fun pro tech space website icu buzz cc tk ml ga cf gq ru cn us uk de",
        "fr nl eu in ai tv ws su pw",
    )
).split()
LINK = re.compile(
    r"\b[a-z][a-z0-9+.\-]{1,15}://\S+"
    r"|\bwww\.\S+"
    r"|\b(?:[a-z0-9\-]+\.)+(?:" + "|".join(LINK_TLDS) + r")\b(?:/\S*)?",
    re.IGNORECASE,
)

RULES = ("blocklist", "mentions", "links", "new_token_links", "duplicate")


#: ASCII's non-alphanumerics, for :func:`fingerprint` of ASCII text.
_ASCII_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def normalised(text: str) -> str:
    """NFKC, case-folded, without format characters (zero-width joiners and spaces)."""
    if text.isascii():
        # Every message pays this: ASCII is NFKC-stable, casefold() is lower() on it and it
        # holds no format (Cf) character, so the per-character walk below is not needed
        # (it was ~15% of a message's CPU in a room of 10).
        return text.lower()
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if unicodedata.category(c) != "Cf")


def fingerprint(text: str) -> str:
    """What the duplicate rule compares: the letters and digits of the normalised text,
    words separated by one space (punctuation, case, spacing and emoji do not matter)."""
    return _words(normalised(text))


def _words(norm: str) -> str:
    """:func:`fingerprint` of text already :func:`normalised`."""
    if norm.isascii():  # the same words as the walk below, by one regex
        return " ".join(_ASCII_NOT_ALNUM.sub(" ", norm).split())
    words = "".join(c if c.isalnum() else " " for c in norm).split()
    return " ".join(words)


def links(text: str) -> int:
    """How many links the (normalised) text holds."""
    return _links(normalised(text))


def _links(norm: str) -> int:
    """:func:`links` of text already :func:`normalised`. Every alternative of :data:`LINK`
    needs a ``.`` or ``://`` in the text: without either (most chat lines) there is no
    match to look for, and the regex, the dearest step of a plain message's screen, is
    skipped (tests/chat/test_spam.py holds this to the regex's own answer)."""
    if "." not in norm and "://" not in norm:
        return 0
    return len(LINK.findall(norm))


@dataclass(slots=True)
class _Sent:
    at: float
    digest: bytes
    room: str
    client_msg_id: str | None


class SpamFilter:
    """Screens a user's message or edit; refuses with :class:`~chatsvc.errors.Spam`."""

    def __init__(
        self,
        settings: SpamSettings,
        metrics: Metrics,
        flags: FlagStore,
        *,
        ids: MessageIdGenerator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._flags = flags
        self._clock = clock
        self._ids = ids or MessageIdGenerator(clock)
        self._blocklist = (
            re.compile("|".join(f"(?:{p})" for p in settings.blocklist), re.IGNORECASE)
            if settings.blocklist
            else None
        )
        #: user id -> its recent texts, least recently active user first.
        self._recent: OrderedDict[str, deque[_Sent]] = OrderedDict()
        #: user id -> (minute, flags recorded in it), least recently flagged first.
        self._flagged: OrderedDict[str, tuple[int, int]] = OrderedDict()
        for rule in RULES:  # every series exists from the start, at 0
            metrics.spam_refused.labels(rule)

    @property
    def tracked_users(self) -> int:
        """Users whose recent texts are held (bounded by ``CHATSVC_SPAM_TRACKED_USERS``)."""
        return len(self._recent)

    async def screen(
        self,
        room: str,
        author: Identity,
        text: str,
        *,
        message_id: str,
        mentions: int = 0,
        client_msg_id: str | None = None,
        edit: bool = False,
    ) -> str:
        """The text to store (masked, with the ``mask`` action); raise ``Spam`` naming the
        rule otherwise. Every catch is counted and recorded as a flag."""
        s = self._settings
        shown = text
        norm = normalised(text)  # once: the blocklist, links and duplicate rules all read it
        blocked = self._blocklist
        if blocked is not None and (blocked.search(text) or blocked.search(norm)):
            if s.blocklist_action == "mask":
                shown = blocked.sub(lambda m: "*" * len(m.group(0)), text)
            if s.blocklist_action == "reject" or blocked.search(normalised(shown)):
                await self._refuse(room, author, text, "blocklist", "the message holds a blocked word")
        if mentions > s.max_mentions:
            await self._refuse(
                room, author, text, "mentions", f"at most {s.max_mentions} mentions per message"
            )
        found = _links(norm)  # links(text), on the text normalised above
        if found > s.max_links:
            await self._refuse(room, author, text, "links", f"at most {s.max_links} links per message")
        if found and self._token_too_new(author):
            await self._refuse(
                room,
                author,
                text,
                "new_token_links",
                f"links need a token at least {s.link_min_token_age_minutes} minutes old",
            )
        if not edit and self._duplicate(room, author.user_id, norm, client_msg_id):
            await self._refuse(
                room, author, text, "duplicate", f"the same text again within {s.duplicate_window_seconds} s"
            )
        if shown != text:
            self._metrics.spam_masked.inc()
            await self._record(room, author, text, "blocklist", "masked", message_id)
        return shown

    def _token_too_new(self, author: Identity) -> bool:
        minutes = self._settings.link_min_token_age_minutes
        if not minutes or author.issued_at is None:
            return False
        return self._clock() - author.issued_at < minutes * 60

    def _duplicate(self, room: str, user_id: str, norm: str, client_msg_id: str | None) -> bool:
        """Whether the :func:`normalised` text ``norm`` repeats one of the user's within the
        window; remembers it if not."""
        window = self._settings.duplicate_window_seconds
        if not window:
            return False
        now = self._clock()
        self._expire(now - window)
        key = _words(norm)
        if len(key) < self._settings.duplicate_min_chars:
            return False
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        sent = self._sent(user_id, now - window)
        for earlier in sent:
            if earlier.digest == digest:
                # The retry of a message the store holds: it answers with the original.
                return not (
                    client_msg_id is not None
                    and earlier.room == room
                    and earlier.client_msg_id == client_msg_id
                )
        sent.append(_Sent(now, digest, room, client_msg_id))
        return False

    def seen(self, message: Message, *, local: bool) -> None:
        """Another replica let ``message`` through (read from the room stream): remember its
        text for the duplicate rule here too (one copy per digest) when its author has a
        socket here (``local``): only then is hashing it worth its cost."""
        window = self._settings.duplicate_window_seconds
        if not local:
            return
        at = message.created_at_ms / 1000
        now = self._clock()
        if not window or at < now - window:
            return
        key = fingerprint(message.text)
        if len(key) < self._settings.duplicate_min_chars:
            return
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        sent = self._sent(message.user_id, now - window)
        if all(earlier.digest != digest for earlier in sent):
            sent.append(_Sent(at, digest, message.room, message.client_msg_id))

    def _sent(self, user_id: str, oldest: float) -> deque[_Sent]:
        """The user's texts sent since ``oldest`` (made most recently active)."""
        sent = self._recent.get(user_id)
        if sent is None:
            sent = self._recent[user_id] = deque(maxlen=TEXTS_PER_USER)
            while len(self._recent) > self._settings.tracked_users:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(user_id)
            while sent and sent[0].at < oldest:
                sent.popleft()
        return sent

    def _expire(self, oldest: float) -> None:
        """Drop up to :data:`EXPIRE_PER_CALL` least recently active users with nothing
        inside the window (the ones at the front are the stalest)."""
        for _ in range(EXPIRE_PER_CALL):
            if not self._recent:
                return
            user_id, sent = next(iter(self._recent.items()))
            if sent and sent[-1].at >= oldest:
                return
            del self._recent[user_id]

    def _flag_budget(self, user_id: str) -> bool:
        """Whether ``user_id`` may have one more flag recorded this minute."""
        minute = int(self._clock() // 60)
        start, count = self._flagged.pop(user_id, (minute, 0))
        if start != minute:
            start, count = minute, 0
        self._flagged[user_id] = (start, count + 1)
        while len(self._flagged) > self._settings.tracked_users:
            self._flagged.popitem(last=False)
        return count < FLAGS_PER_USER_PER_MINUTE

    async def _refuse(self, room: str, author: Identity, text: str, rule: str, why: str) -> None:
        self._metrics.spam_refused.labels(rule).inc()
        await self._record(room, author, text, rule, "rejected", "")
        raise Spam(rule, f"refused as spam ({rule}): {why}")

    async def _record(
        self, room: str, author: Identity, text: str, rule: str, action: str, message_id: str
    ) -> None:
        """Keep the flag for moderators (at most :data:`FLAGS_PER_USER_PER_MINUTE` per user);
        a store failure is logged (no text, no trace) and the verdict stands."""
        if not self._flag_budget(author.user_id):
            return
        flag = Flag(
            id=self._ids.new(),
            room=room,
            user_id=author.user_id,
            user_name=author.name,
            rule=rule,
            action=action,
            text=text,
            message_id=message_id,
            at_ms=int(self._clock() * 1000),
        )
        try:
            await self._flags.add_flag(flag)
        except ChatError as exc:
            log.warning("could not record a %s flag in %s (%s)", rule, room, exc.code)
