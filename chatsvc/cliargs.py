"""Argument helpers shared by ``chatsvc`` and ``chatsvc admin`` (no chatsvc imports).

Both command modules use these, so neither has to import the other for them: ``cli``
imports ``admin.client`` to register its subcommands, never the reverse.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

USAGE_EXIT = 2  # argparse's status for usage errors; every CLI error uses it


class UsageError(Exception):
    """A command cannot run as given; the message names the cause and the fix (one line)."""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m or 1h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def positive_duration(text: str) -> float:
    """:func:`parse_duration`, at least one second: JWT times are whole seconds, so anything
    shorter would mint a token that is expired when minted."""
    seconds = parse_duration(text)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1s, got {text!r} (e.g. 30m or 1h)")
    return seconds


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: the cause, then where help is."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with status 2."""
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(prog: str, error: UsageError) -> int:
    """Report ``error`` on one line of stderr; returns the exit status to use."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return USAGE_EXIT
