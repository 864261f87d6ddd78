"""The spam blocklist file (``CHATSVC_SPAM_BLOCKLIST_FILE``): read and checked once at start-up
into regular expressions that :mod:`chatsvc.chat.spam` runs on every message."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

#: Bounds on the blocklist file: it is read at start-up, every entry runs on every message.
BLOCKLIST_MAX_BYTES = 64 * 1024
BLOCKLIST_MAX_ENTRIES = 1000
BLOCKLIST_PATTERN_MAX = 256
#: Text an entry must not match an empty string in (word edges, digits, spaces, ends).
BLOCKLIST_PROBE = "ab 12 cd"


def load_blocklist(path: Path) -> tuple[str, ...]:
    """The blocklist file as regular expressions: one entry a line, ``#`` comments and blank
    lines ignored; ``re:<regex>`` is a regular expression, anything else a word or phrase
    matched as a whole word, case-insensitively. Raise ValueError naming the line."""
    if path.stat().st_size > BLOCKLIST_MAX_BYTES:
        raise ValueError(f"{path} is larger than {BLOCKLIST_MAX_BYTES} bytes")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8") from None
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(out) == BLOCKLIST_MAX_ENTRIES:
            raise ValueError(f"{path} has more than {BLOCKLIST_MAX_ENTRIES} entries")
        if len(entry) > BLOCKLIST_PATTERN_MAX:
            raise ValueError(f"{path} line {number}: longer than {BLOCKLIST_PATTERN_MAX} characters")
        if entry.startswith("re:"):
            pattern = entry[3:]
        else:
            words = unicodedata.normalize("NFKC", entry).casefold().split()
            pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"{path} line {number}: not a regular expression ({exc})") from None
        # An entry that can match nothing at all (``a*``, ``\b``) would refuse, or star out
        # nothing in, every message.
        if not pattern or any(m.end() == m.start() for m in compiled.finditer(BLOCKLIST_PROBE)):
            raise ValueError(f"{path} line {number}: matches the empty text")
        out.append(pattern)
    return tuple(out)
