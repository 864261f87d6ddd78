"""bench/message_cost.py runs the real app in process and checks every message's writes;
bench/receive_cost.py checks every message reached the handler, bench/packet_cost.py that
both packet classes encode alike."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPT = BENCH / "message_cost.py"


def test_reports_a_cost_per_message_for_each_room_size_and_receive_path() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rooms", "2,5", "--messages", "50", "--receive", "stock,fast"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
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


def test_receive_cost_compares_both_paths() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "receive_cost.py"), "--messages", "2000", "--repeat", "2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    paths = re.findall(r"^(\w+): median ([\d.]+) us of CPU per message", done.stdout, re.MULTILINE)
    assert [name for name, _ in paths] == ["stock", "receive_packet"], done.stdout
    assert "saved per received message" in done.stdout


def test_refuses_unbounded_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rooms", "5000"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "bounded" in done.stderr


def test_packet_cost_compares_both_packet_classes() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "packet_cost.py"), "--packets", "2000", "--repeat", "2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    classes = re.findall(r"^([\w-]+): median ([\d.]+) us of CPU per packet", done.stdout, re.MULTILINE)
    assert [name for name, _ in classes] == ["python-socketio", "SocketIOPacket"], done.stdout
    assert "saved per packet" in done.stdout
