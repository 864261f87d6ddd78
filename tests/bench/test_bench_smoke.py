"""The benchmark harness at toy size, so it cannot rot: servers start, the load generator
connects, every scenario produces a well-formed result, and everything is stopped.

Nothing here judges speed (that is what ``make bench`` is for); a few connections and
under a second of traffic per scenario.

The Centrifugo peer is left out (``--no-centrifugo``, asserted below): building it is a cold
``go install`` of about 3 minutes and 1.7 GB of module and build cache, too much for every
``make test`` on a fresh machine. ``make bench``/``make bench-quick`` build and run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import require_node_packages
from tests.support.services import cassandra_env, kafka_env

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node_modules() -> None:
    """The load generator's and the peer's packages, from their lockfiles."""
    require_node_packages(BENCH, "ws/package.json")
    require_node_packages(BENCH / "peers" / "node-socketio", "socket.io/package.json")


def run_bench(out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--size",
            "tiny",
            "--out",
            str(out),
            "--name",
            "smoke",
            "--no-centrifugo",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, f"bench/run.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    results: dict[str, Any] = json.loads((out / "smoke.json").read_text())
    markdown = (out / "smoke.md").read_text()
    assert "| Scenario | Metric |" in markdown
    assert results["machine"]["nproc"] >= 1
    assert (out / "smoke.png").is_file() == has_matplotlib()
    assert "centrifugo" in results["skipped"]
    return results


def has_matplotlib() -> bool:
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("matplotlib") is not None


def check_fanout_row(row: dict[str, Any], nproc: int) -> None:
    assert row["sent"] > 0
    assert row["acked"] == row["sent"], row
    assert row["ack_errors"] == 0, row
    assert 0 < row["delivered"] <= row["expected"], row
    latency = row["latency_ms"]
    assert latency["n"] == row["delivered"]
    assert 0 <= latency["p50"] <= latency["p99"] <= latency["p999"] <= latency["max"]
    # CPU comes from the kernel's per-process clock (nanoseconds, bench/harness.py): a server
    # that delivered messages and a load generator that sent them both used some, and no
    # process uses more cores than the machine has (a unit slip would).
    assert 0 < row["server_cores"] <= nproc * 1.1, row
    assert 0 < row["loadgen_cores"] <= nproc * 1.1, row


def test_local_scenarios(node_modules: None, tmp_path: Path) -> None:
    node = cassandra_env()  # history is also read from the CQL node
    contact = f"{node['CASSANDRA_TEST_CONTACT_POINTS'].split(',')[0]}:{node['CASSANDRA_TEST_PORT']}"
    results = run_bench(
        tmp_path,
        "--scenarios",
        "idle,fanout,rooms,storm,history,ablation",
        "--cql",
        "require",
        "--cql-contact",
        contact,
    )
    sc = results["scenarios"]
    targets = {"chatsvc", "chatsvc-before", "peer"}
    assert set(sc["idle"]) == targets
    for rows in sc["idle"].values():
        assert [r["connections"] for r in rows] == list(results["size_params"]["idle_counts"])
        assert all(r["rss_kb"] > 0 for r in rows)
    assert set(sc["fanout"]) == targets | {"chatsvc-sqlite"}
    for rows in sc["fanout"].values():
        for row in rows:
            check_fanout_row(row, results["machine"]["nproc"])
    assert set(sc["rooms"]) == targets | {"chatsvc-sqlite"}
    for row in sc["rooms"].values():
        check_fanout_row(row, results["machine"]["nproc"])
    assert set(sc["history"]) == {"sqlite", "memory", "cassandra"}
    for row in sc["history"].values():
        assert row["requests"] > 0 and row["latency_ms"]["n"] == row["requests"]
    assert set(sc["storm"]) == {"chatsvc", "peer"}
    for row in sc["storm"].values():
        assert row["connected"] == row["clients"] == results["size_params"]["storm"][0], row
        assert row["per_client_ms"]["n"] == row["clients"]
        assert row["seconds_to_all"] > 0 and row["server_cpu_s"] > 0, row
        assert row["connects_per_cpu_s"] == pytest.approx(row["connected"] / row["server_cpu_s"]), row
    assert "6. connect storm" in (tmp_path / "smoke.md").read_text()
    assert sc["ablation"][0]["target"] == "chatsvc-before"
    for row in sc["ablation"]:
        check_fanout_row(row["big"], results["machine"]["nproc"])
        check_fanout_row(row["small"], results["machine"]["nproc"])


def test_cross_replica_through_kafka(node_modules: None, tmp_path: Path) -> None:
    broker = kafka_env()["KAFKA_TEST_PLAINTEXT"]
    results = run_bench(
        tmp_path,
        "--scenarios",
        "cross,kafka-idle",
        "--no-before",
        "--kafka",
        "require",
        "--kafka-brokers",
        broker,
    )
    points = results["size_params"]["kafka_idle"][0]
    rows = results["scenarios"]["kafka-idle"]["chatsvc"]
    assert [(r["records"], r["offered_records_per_s"]) for r in rows] == [tuple(p) for p in points]
    for row in rows:
        # The idle replica consumed every record and the publisher sent them: both used CPU.
        # The idle cost is net of the replica's baseline, so at most its gross cost.
        assert row["idle_cpu_s"] > 0 and row["publisher_cpu_ms_per_1000"] > 0, row
        assert 0 <= row["idle_cpu_ms_per_1000"] <= 1e6 * row["idle_cpu_s"] / row["records"], row
        assert row["ack_latency_ms"]["n"] == row["records"]
    assert "7. The idle replica's Kafka cost" in (tmp_path / "smoke.md").read_text()
    cross = results["scenarios"]["cross"]
    assert set(cross) == {"chatsvc:cross", "chatsvc:single", "peer:single"}
    assert cross["chatsvc:cross"]["replicas"] == 2
    for row in cross.values():
        check_fanout_row(row, results["machine"]["nproc"])


def test_join_storm(node_modules: None, tmp_path: Path) -> None:
    """The join storm at toy size: every client joined every room of its Zipf set, presence
    was delivered on both servers (the Node peer with PEER_PRESENCE on), nobody dropped."""
    results = run_bench(tmp_path, "--scenarios", "joinstorm", "--no-before")
    clients, rooms, per_client, _ = results["size_params"]["joinstorm"]
    rows = results["scenarios"]["joinstorm"]
    assert set(rows) == {"chatsvc", "peer"}
    for row in rows.values():
        assert row["connected"] == row["clients"] == clients, row
        assert (row["rooms"], row["rooms_per_client"]) == (rooms, per_client), row
        assert row["per_client_ms"]["n"] == clients
        assert row["presence_deliveries"] > 0 and row["dropped"] == 0, row
        assert row["seconds_to_all"] > 0, row  # CPU may read 0 at this size (10 ms ticks)
    assert "6b. Join storm" in (tmp_path / "smoke.md").read_text()


def test_cross_replica_before_and_after_in_one_run(node_modules: None, tmp_path: Path) -> None:
    """``--baseline``: the cross scenario measures another revision beside this checkout,
    each in both layouts, and the before/after table has its latency rows."""
    broker = kafka_env()["KAFKA_TEST_PLAINTEXT"]
    results = run_bench(
        tmp_path,
        "--scenarios",
        "cross",
        "--no-before",
        "--kafka",
        "require",
        "--kafka-brokers",
        broker,
        "--baseline",
        "HEAD",
    )
    cross = results["scenarios"]["cross"]
    assert set(cross) == {
        "chatsvc:cross",
        "chatsvc:single",
        "chatsvc-base:cross",
        "chatsvc-base:single",
        "peer:single",
    }
    assert cross["chatsvc-base:cross"]["replicas"] == 2
    for row in cross.values():
        check_fanout_row(row, results["machine"]["nproc"])
    markdown = (tmp_path / "smoke.md").read_text()
    before_after = markdown.split("## Before and after")[1]
    assert "cross-replica, " in before_after and "two replicas via Kafka" in before_after
    assert "chatsvc at the baseline commit, sender on A, receivers on B (Kafka)" in markdown
