"""The environment reader's core: typed getters that name the variable in every error.

Each ``read_*`` module turns these into one section of the settings (its variables, defaults
and cross-checks); :mod:`chatsvc.settings.root` reads the rest and assembles them.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from chatsvc.settings.model import Secret, TlsFiles

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def together(
    first: str, first_value: object, second: str, second_value: object, problem: str | None = None
) -> None:
    """Two variables that only work as a pair: both set, or neither; else a
    :class:`SettingsError` naming the one missing (``problem``: the message, by default
    "FIRST and SECOND must be set together")."""
    if (first_value is None) != (second_value is None):
        raise SettingsError(
            second if second_value is None else first,
            problem or f"{first} and {second} must be set together",
        )


class EnvReader:
    """Parses typed values out of an environment mapping, naming the variable on error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        """The value stripped; None when unset or blank (blank means unset everywhere)."""
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        """The value, or ``default`` when unset."""
        return self.raw(name) or default

    def optional(self, name: str) -> str | None:
        """The value, or None when unset."""
        return self.raw(name)

    def _parse(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(name, f"expected {what}, got {raw!r}") from None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        """An integer within ``minimum..maximum`` (inclusive)."""
        value = self._parse(name, default, int, "an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(name, f"must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        """A finite number of at least ``minimum``."""
        value = self._parse(name, default, float, "a number")
        # float() accepts "nan" and "inf"; nan passes every comparison and would, for
        # example, make the rate limiter refuse everything.
        if not math.isfinite(value):
            raise SettingsError(name, f"expected a finite number, got {value}")
        if value < minimum:
            raise SettingsError(name, f"must be >= {minimum}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """``1/true/yes/on`` or ``0/false/no/off``, any case."""
        raw = self.raw(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(name, f"expected true or false, got {raw!r}")

    def items(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, items stripped, empty ones dropped."""
        raw = self.raw(name)
        if raw is None:
            return ()
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def networks(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of CIDRs (or single addresses), normalised."""
        out = []
        for item in self.items(name):
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise SettingsError(name, f"expected CIDRs like 10.0.0.0/8, got {item!r}") from None
        return tuple(out)

    def secret(self, name: str) -> Secret | None:
        """The value wrapped in :class:`Secret`, or None when unset."""
        raw = self.raw(name)
        return Secret(raw) if raw is not None else None

    def readable_file(self, name: str) -> Path | None:
        """A path to a file this process can read, or None when unset."""
        raw = self.raw(name)
        if raw is None:
            return None
        path = Path(raw)
        if not path.is_file():
            raise SettingsError(name, f"file not found: {path}")
        if not os.access(path, os.R_OK):
            raise SettingsError(name, f"file not readable: {path}")
        return path

    def tls_files(self, ca: str, cert: str, key: str, password: str) -> TlsFiles | None:
        """All three set → mutual TLS; none → None; a partial set is an error naming the gap."""
        names = (ca, cert, key)
        present = [n for n in names if self.raw(n) is not None]
        if not present:
            if self.raw(password) is not None:
                raise SettingsError(password, f"set, but {ca}, {cert} and {key} are not")
            return None
        missing = [n for n in names if n not in present]
        if missing:
            raise SettingsError(
                missing[0],
                "TLS needs all of "
                + ", ".join(names)
                + f"; set: {', '.join(present)}; missing: {', '.join(missing)}",
            )
        ca_path, cert_path, key_path = (self.readable_file(n) for n in names)
        assert ca_path and cert_path and key_path
        return TlsFiles(ca_path, cert_path, key_path, self.secret(password))
