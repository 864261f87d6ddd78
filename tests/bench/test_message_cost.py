"""bench/message_cost.py runs the real app in process and checks every message's writes;
bench/fast_path_cost.py checks both sides of each comparison did the same work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reports_a_cost_per_message_for_each_room_size_and_receive_path() -> None:
    done = run_bench("message_cost.py", "--rooms", "2,5", "--messages", "50", "--receive", "stock,fast")
    assert done.returncode == 0, done.stderr
    costs = re.findall(
        r"room of (\d+), (\w+) receive: median ([\d.]+) us of CPU per message \((\d+) writes each",
        done.stdout,
    )
    assert [(members, path, writes) for members, path, _, writes in costs] == [
        ("2", "stock", "2"),
        ("2", "fast", "2"),
        ("5", "stock", "5"),
        ("5", "fast", "5"),
    ], done.stdout
    assert all(float(cost) > 0 for _, _, cost, _ in costs)


def test_measures_fast_paths_turned_off_as_variants_of_the_same_run() -> None:
    done = run_bench("message_cost.py", "--rooms", "2", "--messages", "50", "--off", "none", "event-worker")
    assert done.returncode == 0, done.stderr
    lines = re.findall(r"room of 2, fast receive(, off: [\w,-]+)?: median ([\d.]+) us", done.stdout)
    assert [variant for variant, _ in lines] == ["", ", off: event-worker"], done.stdout
    bad = run_bench("message_cost.py", "--rooms", "2", "--messages", "5", "--off", "warp-drive")
    assert bad.returncode != 0 and "warp-drive" in bad.stderr


def test_refuses_unbounded_runs() -> None:
    for script, args in (("message_cost.py", ["--rooms", "5000"]), ("fast_path_cost.py", ["--units", "0"])):
        done = run_bench(script, *args)
        assert done.returncode == 2 and "bounded" in done.stderr, script


def test_fast_path_cost_compares_each_fast_path_with_upstream() -> None:
    done = run_bench("fast_path_cost.py", "--units", "2000", "--repeat", "2")
    assert done.returncode == 0, done.stderr
    sides = re.findall(r"^(\w+): ([\w-]+): median ([\d.]+) us of CPU per ", done.stdout, re.MULTILINE)
    assert [(name, side) for name, side, _ in sides] == [
        ("receive", "stock"),
        ("receive", "receive_packet"),
        ("packet", "python-socketio"),
        ("packet", "SocketIOPacket"),
    ], done.stdout
    assert all(float(cost) > 0 for _, _, cost in sides)
    assert re.findall(r"^(\w+): saved ", done.stdout, re.MULTILINE) == ["receive", "packet"]
