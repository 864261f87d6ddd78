"""Node packages for the tests that drive JavaScript (socket.io-client, the bench harness).

``make test`` runs ``npm ci`` in every such folder first; when a test runs on its own, the
packages are installed here from the committed lockfile, bounded in time. Missing node or npm
is a failure that says what to install, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NPM_TIMEOUT = 300


def require_node_packages(folder: Path, probe: str) -> str:
    """The node binary, once ``folder/node_modules/<probe>`` is installed from the lockfile."""
    node, npm = shutil.which("node"), shutil.which("npm")
    how = f"npm ci --no-audit --no-fund --prefix {folder.relative_to(REPO)}"
    if node is None or npm is None:
        pytest.fail(f"node and npm are needed: install Node.js >= 18, then `{how}` (or `make test`)")
    if not (folder / "node_modules" / probe).exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"`{how}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return node
