"""The pins of chatsvc.transport.pins: installed versions and hashed library sources.

If this fails after an upgrade, re-read the chatsvc module named in the failure against
the new source before touching the pins; do not just update the expected values.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest

from chatsvc.transport.pins import PINNED_SOURCES, PINNED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]


def _resolve(name: str) -> object:
    module, _, qualname = name.partition(":")
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("dist", sorted(PINNED_VERSIONS))
def test_pinned_versions_are_installed_and_in_pyproject(dist: str) -> None:
    version = PINNED_VERSIONS[dist]
    assert metadata.version(dist) == version, (
        f"{dist} is {metadata.version(dist)}, chatsvc.transport was checked against {version}: "
        "re-read the modules chatsvc.transport.pins names, then update the pins"
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'"{re.escape(dist)}(\[[^\]]*\])?=={re.escape(version)}"', pyproject), dist


@pytest.mark.parametrize("name", sorted(PINNED_SOURCES))
def test_code_chatsvc_replaces_or_relies_on_is_unchanged(name: str) -> None:
    digest, reread = PINNED_SOURCES[name]
    got = hashlib.sha256(inspect.getsource(_resolve(name)).encode()).hexdigest()[:16]  # type: ignore[arg-type]
    assert got == digest, f"{name} changed: re-read {reread}"


def test_each_module_to_reread_exists() -> None:
    for _digest, reread in PINNED_SOURCES.values():
        importlib.import_module(reread)


def test_no_other_module_pins_a_version() -> None:
    """The versions live in pins.py only: a copy elsewhere would drift."""
    transport = ROOT / "chatsvc" / "transport"
    stray = [
        p.name
        for p in transport.glob("*.py")
        if p.name != "pins.py" and re.search(r"PINNED\w* = ", p.read_text())
    ]
    assert stray == []
