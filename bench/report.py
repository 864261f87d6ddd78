"""Turn a results dict (bench/run.py) into a markdown report and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AFTER, BEFORE, SQLITE, PEER, CENTRIFUGO = "chatsvc", "chatsvc-before", "chatsvc-sqlite", "peer", "centrifugo"
COLUMNS = (
    (AFTER, "chatsvc after (memory)"),
    (BEFORE, "chatsvc before (memory)"),
    (SQLITE, "chatsvc after (SQLite file)"),
    (PEER, "Node peer"),
    (CENTRIFUGO, "Centrifugo"),
)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _per_cpu(row: dict[str, Any]) -> str:
    """Median deliveries per CPU-second, with the range over the measurement windows."""
    spread = row.get("delivered_per_cpu_s_range")
    text = _num(row.get("delivered_per_cpu_s"))
    if spread and spread[0] != spread[1]:
        text += f" ({spread[0] / 1000:.1f}k-{spread[1] / 1000:.1f}k)"
    return text


def _lat(row: dict[str, Any] | None, q: str) -> float | None:
    if not row:
        return None
    value = row.get("latency_ms", {}).get(q)
    return None if value is None else float(value)


class _Table:
    def __init__(self, header: list[str]) -> None:
        self.lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(self, *cells: str) -> None:
        self.lines.append("| " + " | ".join(cells) + " |")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _metric_row(
    table: _Table,
    scenario: str,
    metric: str,
    values: dict[str, float | None],
    digits: int = 0,
) -> None:
    cells = [_num(values.get(key), digits) for key, _ in COLUMNS]
    table.row(
        scenario,
        metric,
        *cells,
        _ratio(values.get(AFTER), values.get(PEER)),
        _ratio(values.get(AFTER), values.get(CENTRIFUGO)),
        _ratio(values.get(BEFORE), values.get(PEER)),
        _ratio(values.get(AFTER), values.get(BEFORE)),
    )


def summary_table(results: dict[str, Any]) -> str:
    """The headline table: every scenario, chatsvc after/before and SQLite against the peers."""
    sc = results["scenarios"]
    table = _Table(
        [
            "Scenario",
            "Metric",
            *[label for _, label in COLUMNS],
            "after/peer",
            "after/Centrifugo",
            "before/peer",
            "after/before",
        ]
    )
    for i, count in enumerate(results["size_params"]["idle_counts"]):
        values = {k: rows[i]["kb_per_conn"] for k, rows in sc.get("idle", {}).items() if i < len(rows)}
        _metric_row(table, f"1. idle, {count:,} conns", "KiB RSS per connection (lower is better)", values, 1)
    fan = sc.get("fanout", {})
    sizes = [row["members"] for row in next(iter(fan.values()), [])]
    for i, members in enumerate(sizes):
        rows = {k: v[i] for k, v in fan.items() if i < len(v)}
        name = f"2. fan-out, room of {members:,} @ {next(iter(rows.values()))['offered_msgs_per_s']:g} msg/s"
        _metric_row(table, name, "deliveries/s", {k: r["delivered_per_s"] for k, r in rows.items()})
        _metric_row(
            table, "", "deliveries per server CPU-s", {k: r["delivered_per_cpu_s"] for k, r in rows.items()}
        )
        for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            _metric_row(table, "", f"latency {label} ms", {k: _lat(r, q) for k, r in rows.items()}, 1)
    rooms = sc.get("rooms", {})
    if rooms:
        any_row = next(iter(rooms.values()))
        name = (
            f"3. {any_row['rooms']} rooms of {any_row['members']} @ {any_row['offered_msgs_per_s']:g} msg/s"
        )
        _metric_row(table, name, "deliveries/s", {k: r["delivered_per_s"] for k, r in rooms.items()})
        _metric_row(
            table, "", "deliveries per server CPU-s", {k: r["delivered_per_cpu_s"] for k, r in rooms.items()}
        )
        for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            _metric_row(table, "", f"latency {label} ms", {k: _lat(r, q) for k, r in rooms.items()}, 1)
    cross = sc.get("cross", {})
    if cross:
        any_row = next(iter(cross.values()))
        for layout, title in (("cross", "two replicas via Kafka"), ("single", "one replica / one peer")):
            rows = {k.split(":")[0]: r for k, r in cross.items() if r["layout"] == layout}
            name = f"4. {any_row['receivers']} receivers @ {any_row['offered_msgs_per_s']:g} msg/s, {title}"
            for i, (q, label) in enumerate((("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))):
                _metric_row(
                    table,
                    name if i == 0 else "",
                    f"latency {label} ms",
                    {k: _lat(r, q) for k, r in rows.items()},
                    1,
                )
    hist = sc.get("history", {})
    for key, row in hist.items():
        for i, (q, label) in enumerate((("p50", "p50"), ("p99", "p99"))):
            table.row(
                f"5. history, {key}" if i == 0 else "",
                f"page of 50: {label} ms",
                _num(_lat(row, q), 2),
                "-",
                "-",
                "n/a (no storage)",
                "n/a (history off)",
                "-",
                "-",
                "-",
                "-",
            )
    storm = sc.get("storm", {})
    if storm:
        any_row = next(iter(storm.values()))
        name = f"6. connect storm, {any_row['clients']:,} clients connect + join"
        _metric_row(
            table, name, "connects per server CPU-s", {k: r["connects_per_cpu_s"] for k, r in storm.items()}
        )
        _metric_row(
            table,
            "",
            "seconds until all joined (lower is better)",
            {k: r["seconds_to_all"] for k, r in storm.items()},
            2,
        )
    for idle_kafka in sc.get("kafka-idle", {}).get(AFTER, []):
        table.row(
            f"7. idle replica, Kafka records of rooms it has no members in, "
            f"{idle_kafka['offered_records_per_s']:g}/s",
            "CPU-ms per 1,000 records (lower is better)",
            _num(idle_kafka["idle_cpu_ms_per_1000"], 1),
            "-",
            "-",
            "n/a (no Kafka adapter)",
            "n/a",
            "-",
            "-",
            "-",
            "-",
        )
    return table.render()


def joinstorm_table(results: dict[str, Any]) -> str:
    """The join storm (Zipf rooms, presence on), per server."""
    storm = results["scenarios"].get("joinstorm", {})
    if not storm:
        return ""
    labels = {
        AFTER: "chatsvc after (memory): presence aggregated from 100 members",
        PEER: "Node peer: one `presence` per join to the rest of the room",
        CENTRIFUGO: "Centrifugo: join/leave pushes on",
    }
    table = _Table(
        [
            "Server",
            "clients x rooms each",
            "largest room",
            "seconds until all joined",
            "server CPU-s",
            "joins per server CPU-s",
            "presence deliveries",
            "sockets dropped",
            "per client p50 / p99 ms",
        ]
    )
    for key, row in storm.items():
        lat = row["per_client_ms"]
        table.row(
            labels.get(key, key),
            f"{row['connected']:,} x {row['rooms_per_client']}",
            f"{row['largest_room']:,}",
            _num(row["seconds_to_all"], 2),
            _num(row["server_cpu_s"], 2),
            _num(row["joins_per_cpu_s"]),
            f"{row['presence_deliveries']:,}",
            str(row["dropped"]),
            f"{_num(lat['p50'], 1)} / {_num(lat['p99'], 1)}",
        )
    return table.render()


def storm_table(results: dict[str, Any]) -> str:
    """The connect storm, per server."""
    storm = results["scenarios"].get("storm", {})
    if not storm:
        return ""
    labels = {
        AFTER: "chatsvc after (memory): connect with JWT, `join {room, since}`",
        PEER: "Node peer: connect, `join {room}`",
        CENTRIFUGO: "Centrifugo: connect with JWT, subscribe",
    }
    table = _Table(
        [
            "Server",
            "clients",
            "seconds until all joined",
            "connects/s",
            "server CPU-s",
            "connects per server CPU-s",
            "per client p50 / p99 ms",
            "load generator cores",
            "other processes' cores",
        ]
    )
    for key, row in storm.items():
        lat = row["per_client_ms"]
        table.row(
            labels.get(key, key),
            f"{row['connected']:,}/{row['clients']:,}",
            _num(row["seconds_to_all"], 2),
            _num(row["connects_per_s"]),
            _num(row["server_cpu_s"], 2),
            _num(row["connects_per_cpu_s"]),
            f"{_num(lat['p50'], 1)} / {_num(lat['p99'], 1)}",
            _num(row["loadgen_cores"], 2),
            _num(row["other_cores"], 2),
        )
    return table.render()


def kafka_idle_table(results: dict[str, Any]) -> str:
    """The idle replica's cost per Kafka record at each offered rate, and what it means at scale."""
    rows = results["scenarios"].get("kafka-idle", {}).get(AFTER)
    if not rows:
        return ""
    table = _Table(
        ["Measurement \\ offered rate", *[f"{r['offered_records_per_s']:g} records/s" for r in rows]]
    )

    def line(label: str, cells: list[str]) -> None:
        table.row(label, *cells)

    line("records published (one per chat message, through replica A)", [f"{r['records']:,}" for r in rows])
    line("achieved publish rate, records/s", [_num(r["achieved_records_per_s"]) for r in rows])
    line(
        "**idle replica B: CPU-ms per 1,000 records** (its idle baseline subtracted)",
        [f"**{_num(r['idle_cpu_ms_per_1000'], 1)}**" for r in rows],
    )
    line("idle replica B: its idle baseline, cores", [_num(r["idle_baseline_cores"], 3) for r in rows])
    line("idle replica B: cores used at this rate", [_num(r["idle_cores_at_rate"], 3) for r in rows])
    line(
        "publisher A: CPU-ms per 1,000 messages (ack, store, publish)",
        [_num(r["publisher_cpu_ms_per_1000"], 1) for r in rows],
    )
    line(
        "publisher A: ack p50 / p99 ms",
        [f"{_num(r['ack_latency_ms']['p50'], 1)} / {_num(r['ack_latency_ms']['p99'], 1)}" for r in rows],
    )
    line("other processes' cores", [_num(r["other_cores"], 2) for r in rows])
    return table.render()


def kafka_replicas_table(results: dict[str, Any]) -> str:
    """Each replica's CPU as N replicas share one broker, and its cost per foreign record."""
    rows = results["scenarios"].get("kafka-replicas", {}).get("chatsvc")
    if not rows:
        return ""
    table = _Table(
        [
            "replicas N",
            "records/s per replica (own)",
            "each replica's cores",
            "foreign records per replica",
            "µs of CPU per foreign record (vs N = 1)",
            "other processes' cores",
        ]
    )
    for r in rows:
        foreign = r.get("foreign_us_per_record")
        table.row(
            str(r["replicas"]),
            _num(r["records_per_s_per_replica"]),
            ", ".join(_num(c, 3) for c in r["cores_per_replica"]),
            f"{r['foreign_records_per_replica']:,}" if "foreign_records_per_replica" in r else "-",
            ", ".join(_num(u) for u in foreign) if foreign else "-",
            _num(r.get("other_cores"), 2),
        )
    return table.render()


def cross_table(results: dict[str, Any]) -> str:
    cross = results["scenarios"].get("cross", {})
    if not cross:
        return ""
    table = _Table(
        ["Configuration", "replicas", "p50 ms", "p99 ms", "p99.9 ms", "delivered/expected", "server cores"]
    )
    labels = {
        f"{AFTER}:cross": "chatsvc after, sender on A, receivers on B (Kafka)",
        f"{BEFORE}:cross": "chatsvc before, sender on A, receivers on B (Kafka)",
        f"{AFTER}:single": "chatsvc after, one replica (in-process bus)",
        f"{BEFORE}:single": "chatsvc before, one replica (in-process bus)",
        f"{BASELINE}:cross": "chatsvc at the baseline commit, sender on A, receivers on B (Kafka)",
        f"{BASELINE}:single": "chatsvc at the baseline commit, one replica (in-process bus)",
        f"{PEER}:single": "Node peer, one server (no Kafka adapter)",
    }
    for key, row in cross.items():
        table.row(
            labels.get(key, key),
            str(row["replicas"]),
            _num(_lat(row, "p50"), 1),
            _num(_lat(row, "p99"), 1),
            _num(_lat(row, "p999"), 1),
            f"{row['delivered']}/{row['expected']}",
            _num(row["server_cores"], 2),
        )
    return table.render()


def ablation_workloads(results: dict[str, Any]) -> str:
    """The ablation's workloads in words, from the size parameters."""
    (big, big_rate), (rooms, members, small_rate), seconds = results["size_params"]["ablation"]
    return (
        f"one room of {big:,} at {big_rate:g} msg/s, and {rooms} rooms of {members} at "
        f"{small_rate:g} msg/s in total; {seconds:g} s measured each"
    )


def ablation_table(results: dict[str, Any]) -> str:
    """One optimisation at a time, against the 'before' row of the same run."""
    rows = results["scenarios"].get("ablation", [])
    if not rows:
        return ""
    base = rows[0]
    big_n = base["big"]["members"]
    small = base["small"]
    table = _Table(
        [
            "chatsvc configuration",
            f"room of {big_n:,}: deliveries per CPU-s",
            "vs before",
            "p99 ms",
            f"{small['rooms']} rooms of {small['members']}: deliveries per CPU-s",
            "vs before",
            "p99 ms",
            "load generator cores",
        ]
    )
    for row in rows:
        big, sm = row["big"], row["small"]
        table.row(
            row["label"],
            _per_cpu(big),
            _ratio(big["delivered_per_cpu_s"], base["big"]["delivered_per_cpu_s"]),
            _num(_lat(big, "p99"), 1),
            _per_cpu(sm),
            _ratio(sm["delivered_per_cpu_s"], base["small"]["delivered_per_cpu_s"]),
            _num(_lat(sm, "p99"), 1),
            _num(max(big["loadgen_cores"], sm["loadgen_cores"]), 2),
        )
    return table.render()


def detail_table(results: dict[str, Any]) -> str:
    """Per-run measurements, including how busy the machine was."""
    table = _Table(
        [
            "Scenario",
            "Server",
            "deliveries per CPU-s, median (range over windows)",
            "delivered/expected",
            "ack errors",
            "ack p99 ms",
            "server cores",
            "load generator cores",
            "other processes' cores",
        ]
    )
    sc = results["scenarios"]
    for key, rows in sc.get("fanout", {}).items():
        for row in rows:
            _detail(table, f"fan-out {row['members']}", key, row)
    for key, row in sc.get("rooms", {}).items():
        _detail(table, "small rooms", key, row)
    for key, row in sc.get("cross", {}).items():
        _detail(table, "cross-replica", key, row)
    return table.render()


def _detail(table: _Table, scenario: str, key: str, row: dict[str, Any]) -> None:
    table.row(
        scenario,
        key,
        _per_cpu(row),
        f"{row['delivered']}/{row['expected']}",
        str(row["ack_errors"]),
        _num(row["ack_latency_ms"].get("p99"), 1),
        _num(row["server_cores"], 2),
        _num(row["loadgen_cores"], 2),
        _num(row["other_cores"], 2),
    )


def amendments(results: dict[str, Any]) -> list[str]:
    """Scenarios re-measured after the run (its ``amended`` list: what, when, why), one
    paragraph each, so a results file never passes a second run's rows off as the first's."""
    return [f"Amended: {note}\n" for note in results.get("amended", [])]


def markdown(results: dict[str, Any], stem: str) -> str:
    m = results["machine"]
    size = results["size"]
    command = ".venv/bin/python bench/run.py" + ("" if size == "full" else f" --size {size}")
    if results.get("scenario_list"):
        command += f" --scenarios {','.join(results['scenario_list'])}"
    parts = [
        f"# chatsvc benchmark results ({size})\n",
        f"Run {results['started_at']} in {results['seconds']} s: `{command}` (see bench/README.md).\n",
        *amendments(results),
        "## Machine\n",
        f"- {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}",
        f"- Python {m['python']}, Node {m['node']}; "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items() if v),
        f"- load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')} "
        "(the machine is shared: see 'other processes' cores' below)",
        "- load generator: one Node process, a lean Engine.IO v4 websocket client; it offers "
        "permessage-deflate (as browsers do) in the idle scenario and where a row says so, and not in "
        "the throughput scenarios, where inflating every delivery would make it the bottleneck",
        f"- chatsvc senders' rate limit raised for the run: {results['rate_limit_env']}",
        "- 'before' = chatsvc as it was before the optimisation work: `CHATSVC_WS_COMPRESSION=true` "
        f"and, reverted by bench/launch_chatsvc.py, {', '.join(results['optimisations'])}\n",
        f"![chatsvc vs the Node peer]({stem}.png)\n",
        "## All scenarios\n",
        "- Centrifugo: v6 with bench/peers/centrifugo/config.json (memory engine, no history or "
        "presence, subscribers may publish), driven by the same load generator over its JSON protocol; "
        "it also sends each publication back to its publisher, which the load generator does not "
        "count as a delivery\n",
        "Ratios are chatsvc ÷ peer (Node socket.io or Centrifugo) measured in this same run "
        "(for memory and latency lower is better, "
        "for deliveries higher is better). Latency is send-to-receive, measured from each message's "
        "scheduled send time (open loop).\n",
        summary_table(results),
    ]
    storm = storm_table(results)
    if storm:
        parts += [
            "\n## 6. Connect storm in detail\n",
            "Every client connects and joins as fast as the load generator can, "
            f"{next(iter(results['scenarios']['storm'].values()))['in_flight']} in flight at once, "
            "into rooms of 20 (chatsvc announces each join to the rest of the room). chatsvc's join carries "
            "`since` (nothing missed: the catch-up query runs and finds nothing); the Node peer ignores it; "
            "Centrifugo subscribes. Server CPU is counted from just before the first connect to the last "
            "join ack.\n",
            storm,
        ]
    joinstorm = joinstorm_table(results)
    if joinstorm:
        parts += [
            "\n## 6b. Join storm (market open)\n",
            "Every client connects and joins a few rooms drawn from a Zipf distribution (seeded: the "
            "same topology for every server), with presence on, "
            f"{next(iter(results['scenarios']['joinstorm'].values()))['in_flight']} connections in "
            "flight at once. Presence deliveries are counted by the load generator; a socket the "
            "server dropped (ping timeout) counts in the last column.\n",
            joinstorm,
        ]
    kafka_idle = kafka_idle_table(results)
    if kafka_idle:
        parts += [
            "\n## 7. The idle replica's Kafka cost in detail\n",
            "Two chatsvc replicas on the real broker, a fresh topic (3 partitions); replica A publishes, "
            "replica B has no member in any of those rooms but reads every partition, as every replica "
            "does. See docs/scaling.md for what this means for N replicas.\n",
            kafka_idle,
        ]
    kafka_replicas = kafka_replicas_table(results)
    if kafka_replicas:
        parts += [
            "\n## 7b. N replicas on one broker\n",
            "N chatsvc replicas on the real broker, each with its own clients in its own rooms, each "
            "publishing at the same rate; each replica's CPU is compared with a lone replica's under "
            "the same own load, and the difference is divided by the foreign records it read "
            "(bench/kafka_replicas.py, docs/scaling.md).\n",
            kafka_replicas,
        ]
    cross = cross_table(results)
    if cross:
        parts += ["\n## 4. Cross-replica (Kafka) in detail\n", cross]
    ablation = ablation_table(results)
    if ablation:
        parts += [
            "\n## The optimisations, one at a time\n",
            f"Same workloads at the same offered rates ({ablation_workloads(results)}), "
            "one server per row, measured one after the other in this run. Deliveries per CPU-second "
            "of the server process is the figure to compare (latency here mostly tracks how busy the "
            "shared machine was). In brackets: the range over the measurement windows.\n",
            ablation,
        ]
    alt = variant_table(results, ALT, "chatsvc-alt")
    if alt:
        parts += [
            "\n## Another CPython (`--python-alt`)\n",
            "The same chatsvc on another interpreter's venv, measured in this run beside the default one.\n",
            alt,
        ]
    base = variant_table(results, BASELINE, "chatsvc-base")
    if base:
        commit = results.get("baseline", {}).get("commit", "?")
        parts += [
            f"\n## Before and after (`--baseline`: chatsvc at {commit})\n",
            f"chatsvc as it was at commit {commit}, same interpreter and venv, measured in this run "
            "beside this checkout: what the changes since then bought.\n",
            base,
        ]
    parts += ["\n## Run details\n", detail_table(results)]
    if results.get("skipped"):
        parts.append("\n## Skipped\n")
        parts += [f"- {k}: {v}" for k, v in results["skipped"].items()]
        parts.append("")
    parts.append(f"\nRaw numbers: `{stem}.json`. Chart: `{stem}.png`.\n")
    return "\n".join(parts)


ALT = "chatsvc-alt"
BASELINE = "chatsvc-base"


def variant_table(results: dict[str, Any], key: str, label: str) -> str:
    """A chatsvc variant (``--python-alt``, ``--baseline``) beside chatsvc: idle, fan-out,
    small rooms (``--baseline`` only) and cross-replica latency (each layout)."""
    sc = results["scenarios"]
    idle, fan, cross = sc.get("idle", {}), sc.get("fanout", {}), sc.get("cross", {})
    rooms = sc.get("rooms", {})
    if key not in idle and key not in fan and key not in rooms and f"{key}:cross" not in cross:
        return ""
    table = _Table(["Workload", "Metric", "chatsvc (this checkout)", label, f"{label}/chatsvc"])
    for this, other in zip(idle.get(AFTER, []), idle.get(key, []), strict=False):
        a, b = this["kb_per_conn"], other["kb_per_conn"]
        table.row(
            f"idle, {this['connections']:,} conns",
            "KiB RSS per connection",
            _num(a, 1),
            _num(b, 1),
            _ratio(b, a),
        )
    for this, other in zip(fan.get(AFTER, []), fan.get(key, []), strict=False):
        name = f"fan-out, room of {this['members']:,}"
        a, b = this["delivered_per_cpu_s"], other["delivered_per_cpu_s"]
        table.row(name, "deliveries per server CPU-s", _per_cpu(this), _per_cpu(other), _ratio(b, a))
        a, b = _lat(this, "p99"), _lat(other, "p99")
        table.row("", "latency p99 ms", _num(a, 1), _num(b, 1), _ratio(b, a))
    this, other = rooms.get(AFTER), rooms.get(key)
    if this is not None and other is not None:
        name = f"{this['rooms']:,} rooms of {this['members']:,}"
        a, b = this["delivered_per_cpu_s"], other["delivered_per_cpu_s"]
        table.row(name, "deliveries per server CPU-s", _per_cpu(this), _per_cpu(other), _ratio(b, a))
        a, b = _lat(this, "p99"), _lat(other, "p99")
        table.row("", "latency p99 ms", _num(a, 1), _num(b, 1), _ratio(b, a))
    for layout, title in (("cross", "two replicas via Kafka"), ("single", "one replica")):
        this, other = cross.get(f"{AFTER}:{layout}"), cross.get(f"{key}:{layout}")
        if this is None or other is None:
            continue
        name = f"cross-replica, {this['receivers']} receivers, {title}"
        for i, (q, label) in enumerate((("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))):
            a, b = _lat(this, q), _lat(other, q)
            table.row(name if i == 0 else "", f"latency {label} ms", _num(a, 1), _num(b, 1), _ratio(b, a))
    return table.render()


def chart(results: dict[str, Any], path: Path) -> None:
    """Nine panels: memory, fan-out efficiency, p99 latency, cross-replica, history, ablation,
    connect storm, the idle replica's Kafka cost, and the chatsvc ÷ peer ratios."""
    import matplotlib  # noqa: PLC0415 - bench-only dependency

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sc = results["scenarios"]
    colors = {AFTER: "#1f77b4", BEFORE: "#aec7e8", SQLITE: "#2ca02c", PEER: "#ff7f0e", CENTRIFUGO: "#9467bd"}
    colors.update({"vs Node peer": colors[PEER], "vs Centrifugo": colors[CENTRIFUGO]})
    labels = dict(COLUMNS)
    fig, axes = plt.subplots(3, 3, figsize=(18, 14))
    m = results["machine"]
    fig.suptitle(
        f"chatsvc vs Node socket.io and Centrifugo ({results['size']} run, {results['started_at']}) - "
        f"{m['nproc']} cores "
        f"{m['cpu_model']}, load average {m['loadavg_start'][0]} -> {(m.get('loadavg_end') or ['?'])[0]}",
        fontsize=11,
    )

    def bars(
        ax: Any, groups: list[str], series: dict[str, list[float | None]], ylabel: str, *, log: bool = False
    ) -> None:
        keys = [k for k in (*[k for k, _ in COLUMNS], *series) if k in series]
        keys = list(dict.fromkeys(keys))
        width = 0.8 / max(1, len(keys))
        for j, key in enumerate(keys):
            xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(groups))]
            ys = [v if v is not None else 0 for v in series[key]]
            ax.bar(xs, ys, width, label=labels.get(key, key), color=colors.get(key))
        ax.set_xticks(range(len(groups)), groups, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=9)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)

    def panel(
        ax: Any,
        title: str,
        groups: list[str],
        series: dict[str, list[float | None]],
        ylabel: str,
        *,
        log: bool = False,
        ratio: bool = False,
    ) -> None:
        """One panel: the bars and their title, or "not run" where there is nothing to show.
        ``ratio``: the values are ratios (long group names, tilted; a line at 1)."""
        ax.set_title(title, fontsize=10)
        if not groups:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            return
        bars(ax, groups, series, ylabel, log=log)
        if ratio:
            for label in ax.get_xticklabels():
                label.set(rotation=30, ha="right", fontsize=7)
            ax.axhline(1.0, color="grey", lw=0.8)

    idle = sc.get("idle", {})
    counts = results["size_params"]["idle_counts"] if idle else []
    panel(
        axes[0][0],
        "1. memory per idle connection (lower is better)",
        [f"{c:,} connections" for c in counts],
        {k: [r["kb_per_conn"] for r in rows] for k, rows in idle.items()},
        "KiB RSS per connection",
    )

    fan = sc.get("fanout", {})
    rooms = sc.get("rooms", {})
    groups: list[str] = []
    per_cpu: dict[str, list[float | None]] = {}
    p99: dict[str, list[float | None]] = {}
    if fan:
        sizes = [r["members"] for r in next(iter(fan.values()))]
        groups += [f"room of {s:,}" for s in sizes]
        for key, rows in fan.items():
            per_cpu.setdefault(key, []).extend(r["delivered_per_cpu_s"] for r in rows)
            p99.setdefault(key, []).extend(_lat(r, "p99") for r in rows)
    if rooms:
        any_row = next(iter(rooms.values()))
        groups.append(f"{any_row['rooms']} rooms of {any_row['members']}")
        for key in dict.fromkeys([*per_cpu, *rooms]):
            row = rooms.get(key)
            per_cpu.setdefault(key, [None] * (len(groups) - 1)).append(
                row["delivered_per_cpu_s"] if row else None
            )
            p99.setdefault(key, [None] * (len(groups) - 1)).append(_lat(row, "p99"))
    panel(
        axes[0][1],
        "2-3. fan-out efficiency (higher is better)",
        groups,
        per_cpu,
        "deliveries per server CPU-second",
        log=True,
    )
    panel(
        axes[0][2],
        "2-3. p99 latency at a fixed offered rate (lower is better)",
        groups,
        p99,
        "p99 send-to-receive latency, ms",
        log=True,
    )

    cross = sc.get("cross", {})
    names = {
        f"{AFTER}:cross": "chatsvc after\n2 replicas, Kafka",
        f"{BEFORE}:cross": "chatsvc before\n2 replicas, Kafka",
        f"{AFTER}:single": "chatsvc after\n1 replica",
        f"{BEFORE}:single": "chatsvc before\n1 replica",
        f"{PEER}:single": "Node peer\n1 server",
    }
    keys = [k for k in names if k in cross]
    panel(
        axes[1][0],
        "4. cross-replica latency (lower is better)",
        [names[k] for k in keys],
        {q: [_lat(cross[k], q) for k in keys] for q in ("p50", "p99", "p999")},
        "send-to-receive latency, ms",
        log=True,
    )

    hist = sc.get("history", {})
    panel(
        axes[1][1],
        "5. history page of 50 (chatsvc only; the peer has no storage)",
        list(hist),
        {q: [_lat(hist[n], q) for n in hist] for q in ("p50", "p99")},
        "latency, ms",
    )

    ablation = sc.get("ablation", [])
    short: list[str] = []
    relative: dict[str, list[float | None]] = {}
    if ablation:
        base = ablation[0]
        short = [
            row["label"].split(":")[0].replace("browser-like client", "browser client") for row in ablation
        ]

        def rel(row: dict[str, Any], part: str) -> float | None:
            value, ref = row[part]["delivered_per_cpu_s"], base[part]["delivered_per_cpu_s"]
            return value / ref if value and ref else None

        relative = {
            f"room of {base['big']['members']:,}": [rel(r, "big") for r in ablation],
            f"{base['small']['rooms']} rooms of {base['small']['members']}": [
                rel(r, "small") for r in ablation
            ],
        }
    panel(
        axes[1][2],
        "optimisations one at a time: deliveries per CPU-s vs before",
        [textwrap_label(s) for s in short],
        relative,
        "x before (higher is better)",
        ratio=True,
    )

    storm = sc.get("storm", {})
    panel(
        axes[2][0],
        "6. connect storm: connects (+ join) per server CPU-s (higher is better)",
        [f"{next(iter(storm.values()))['clients']:,} clients"] if storm else [],
        {k: [row["connects_per_cpu_s"]] for k, row in storm.items()},
        "connects per server CPU-second",
    )

    idle_kafka = sc.get("kafka-idle", {}).get(AFTER, [])
    panel(
        axes[2][1],
        "7. chatsvc CPU-ms per 1,000 Kafka records (lower is better)",
        [f"{r['offered_records_per_s']:g} records/s" for r in idle_kafka],
        {
            "idle replica (no members)": [r["idle_cpu_ms_per_1000"] for r in idle_kafka],
            "publishing replica": [r["publisher_cpu_ms_per_1000"] for r in idle_kafka],
        },
        "CPU-ms per 1,000 records",
    )

    ratio_groups, ratio_series = peer_ratios(results)
    panel(
        axes[2][2],
        "chatsvc after ÷ peer, this run (>1: chatsvc better)",
        ratio_groups,
        ratio_series,
        "x peer (higher is better)",
        log=True,
        ratio=True,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def peer_ratios(results: dict[str, Any]) -> tuple[list[str], dict[str, list[float | None]]]:
    """chatsvc after ÷ each peer, oriented so that above 1 means chatsvc does better: deliveries
    and connects per CPU-s as they are, memory and p99 latency inverted (peer ÷ chatsvc)."""
    sc = results["scenarios"]
    groups: list[str] = []
    series: dict[str, list[float | None]] = {"vs Node peer": [], "vs Centrifugo": []}

    def add(label: str, values: dict[str, float | None], *, lower_is_better: bool) -> None:
        mine = values.get(AFTER)
        groups.append(label)
        for name, key in (("vs Node peer", PEER), ("vs Centrifugo", CENTRIFUGO)):
            theirs = values.get(key)
            ok = mine is not None and theirs is not None and mine > 0 and theirs > 0
            series[name].append(((theirs / mine) if lower_is_better else (mine / theirs)) if ok else None)

    idle = sc.get("idle", {})
    counts = results["size_params"]["idle_counts"]
    if idle and counts:
        last = len(counts) - 1
        add(
            f"KiB/idle conn @ {counts[-1]:,}",
            {k: rows[last]["kb_per_conn"] for k, rows in idle.items() if len(rows) > last},
            lower_is_better=True,
        )
    fan = sc.get("fanout", {})
    for i, members in enumerate(r["members"] for r in next(iter(fan.values()), [])):
        rows = {k: v[i] for k, v in fan.items() if i < len(v)}
        add(
            f"room {members:,}: per CPU-s",
            {k: r["delivered_per_cpu_s"] for k, r in rows.items()},
            lower_is_better=False,
        )
        add(f"room {members:,}: p99", {k: _lat(r, "p99") for k, r in rows.items()}, lower_is_better=True)
    storm = sc.get("storm", {})
    if storm:
        add("storm: per CPU-s", {k: r["connects_per_cpu_s"] for k, r in storm.items()}, lower_is_better=False)
    return groups, series


def textwrap_label(text: str, width: int = 16) -> str:
    """Wrap an axis label onto short lines."""
    import textwrap  # noqa: PLC0415

    return "\n".join(textwrap.wrap(text, width))
