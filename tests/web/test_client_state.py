"""The web client's room state, run by node: the room header's slow/surge mode and sentiment
from issue 25's payloads (before the server sends them, so the header is tested on the shapes
the issue names), reaction counts and own reactions, annotations kept across edits, a deleted
parent's text blanked from its replies' quotes, mention candidates. The browser tests drive the
same code through a real server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("client_state.mjs")
ROOM_JS = Path(__file__).parents[2] / "chatsvc" / "web" / "static" / "js" / "room.js"


def test_room_state(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed: install Node.js >= 18 (make test does)")
    module = tmp_path / "room.mjs"
    shutil.copyfile(ROOM_JS, module)
    done = subprocess.run(
        [node, str(SCRIPT), module.as_uri()], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
