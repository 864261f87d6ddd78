"""bench/report.py renders every scenario the run measured (a scenario run but not reported is lost)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402


def _results(scenarios: dict[str, object]) -> dict[str, object]:
    return {"scenarios": scenarios, "size": "tiny"}


def test_kafka_replicas_rows_reach_the_markdown() -> None:
    rows = [
        {"replicas": 1, "records_per_s_per_replica": 100.0, "cores_per_replica": [0.2], "other_cores": 0.1},
        {
            "replicas": 2,
            "records_per_s_per_replica": 100.0,
            "cores_per_replica": [0.21, 0.22],
            "foreign_records_per_replica": 500,
            "foreign_us_per_record": [12.4, 31.0],
            "other_cores": 0.1,
        },
    ]
    table = report.kafka_replicas_table(_results({"kafka-replicas": {"chatsvc": rows}}))
    lines = table.splitlines()
    assert lines[0].startswith("| replicas N |")
    assert lines[2].startswith("| 1 | 100 | 0.200 | - | - |")
    assert lines[3].startswith("| 2 | 100 | 0.210, 0.220 | 500 | 12, 31 |")


def test_no_kafka_replicas_rows_no_section() -> None:
    assert report.kafka_replicas_table(_results({})) == ""


def _row(per_cpu: float, p99: float) -> dict[str, object]:
    return {
        "rooms": 500,
        "members": 5,
        "delivered_per_cpu_s": per_cpu,
        "latency_ms": {"p50": 1.0, "p99": p99, "p999": p99},
    }


def test_the_baseline_gets_a_small_rooms_row() -> None:
    """Issues 23-25 ask for rooms of 5 before and after in one run: ``--baseline`` runs them."""
    rooms = {"chatsvc": _row(10_000.0, 4.0), "chatsvc-base": _row(8_000.0, 5.0)}
    table = report.variant_table(_results({"rooms": rooms}), report.BASELINE, "base")
    lines = [line for line in table.splitlines() if "rooms of 5" in line or "p99" in line]
    assert lines[0].startswith("| 500 rooms of 5 | deliveries per server CPU-s | 10,000")
    assert lines[0].endswith("| 0.80x |")
    assert lines[1].endswith("| 1.25x |")


def test_rows_measured_after_the_run_say_so() -> None:
    assert report.amendments(_results({})) == []
    note = "history re-run 2026-12-07 at e56000d (the CQL node was down)"
    assert report.amendments({**_results({}), "amended": [note]}) == [f"Amended: {note}\n"]
