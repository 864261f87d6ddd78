"""bench/message_cost.py runs the real app in process and checks every message's writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "message_cost.py"


def test_reports_a_cost_per_message_for_each_room_size() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rooms", "2,5", "--messages", "50"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    costs = re.findall(r"room of (\d+): ([\d.]+) us of CPU per message \((\d+) writes each\)", done.stdout)
    assert [(members, writes) for members, _, writes in costs] == [("2", "2"), ("5", "5")], done.stdout
    assert all(float(cost) > 0 for _, cost, _ in costs)


def test_refuses_unbounded_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rooms", "5000"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "bounded" in done.stderr
