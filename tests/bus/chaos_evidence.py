"""Evidence of a failed chaos run (tests/bus/test_chaos.py), kept where pytest's tmp pruning
does not reach: ``$CHATSVC_RUN_DIR/chaos-evidence/<UTC time>/``.

The chaos test fails rarely and only under load, so a failing run must leave enough behind
to name the cause without a rerun: the replicas' and the node driver's logs, what every
sender sent and was acked (with times), what every receiver got, what a fresh client read
from history, the events topic's records of the room (duplicates of a ``client_msg_id``
show up there), and for every acked message history lacks, its rows in CQL (message, key,
stream) read directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from chatsvc.model.ids import timestamp_ms
from chatsvc.store.base import bucket_of
from chatsvc.store.scylla.schema import STREAM_CHUNK
from tests.support.services import RUN_DIR

#: The topic is read for at most this long (a run has a few thousand records).
KAFKA_READ_SECONDS = 30.0


def now_utc() -> str:
    """Wall-clock time with milliseconds, as the replicas' log lines show it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class ChaosRecord:
    """What a chaos run did and saw, filled in as it goes; dumped when it fails."""

    room: str
    topic: str
    brokers: str
    cql: dict[str, str]
    phases: list[dict[str, str]] = field(default_factory=list)
    stored: list[dict[str, Any]] | None = None

    def phase(self, what: str) -> None:
        """Note a step of the run (the faults, mostly) with its wall-clock time."""
        self.phases.append({"at": now_utc(), "what": what})


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")


async def topic_records(topic: str, brokers: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` (bounded by :data:`KAFKA_READ_SECONDS`), decoded."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=brokers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    out: list[dict[str, Any]] = []
    await consumer.start()
    try:
        async with asyncio.timeout(KAFKA_READ_SECONDS):
            quiet = 0
            while quiet < 2:  # read until two polls in a row find nothing new
                batch = await consumer.getmany(timeout_ms=1000)
                quiet = 0 if batch else quiet + 1
                for tp, records in batch.items():
                    for r in records:
                        try:
                            body = json.loads(r.value or b"")
                        except ValueError:
                            body = {"undecodable": repr(r.value[:80] if r.value else r.value)}
                        out.append(
                            {
                                "partition": tp.partition,
                                "offset": r.offset,
                                "timestamp_ms": r.timestamp,
                                "key": r.key.decode(errors="replace") if r.key else None,
                                "t": body.get("t"),
                                "id": body.get("id"),
                                "client_msg_id": body.get("client_msg_id"),
                                "user_id": body.get("user_id"),
                                "host": body.get("host"),
                                "kind": body.get("kind"),
                            }
                        )
    except TimeoutError:
        out.append({"note": f"topic not read to its end within {KAFKA_READ_SECONDS}s"})
    finally:
        await consumer.stop()
    return out


def cql_rows(
    cql: dict[str, str], room: str, acks: Iterable[dict[str, Any]], wanted: set[str]
) -> dict[str, Any]:
    """The room's stream rows, its message rows (with write times) and, for each id of
    ``wanted``, its key row, read directly from the node (blocking: call in a thread)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile  # noqa: PLC0415
    from cassandra.policies import DCAwareRoundRobinPolicy  # noqa: PLC0415

    ks = cql["SCYLLA_KEYSPACE"]
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(cql["SCYLLA_LOCAL_DC"]))
    cluster = Cluster(
        [cql["SCYLLA_CONTACT_POINTS"]],
        port=int(cql["SCYLLA_PORT"]),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    acks = list(acks)
    found: dict[str, Any] = {}
    try:
        session = cluster.connect()
        found["stream"] = partition_rows(
            session,
            f"SELECT pos, kind, ref, writetime(ref) FROM {ks}.room_stream WHERE room = %s AND chunk = %s",
            room,
            sorted({_offset_of(m) // STREAM_CHUNK for m in acks} | {0}),
        )
        found["messages"] = partition_rows(
            session,
            f"SELECT id, pos, client_msg_id, user_id, writetime(user_id), writetime(text)"
            f" FROM {ks}.messages WHERE room = %s AND bucket = %s",
            room,
            sorted({bucket_of(timestamp_ms(m["id"])) for m in acks}),
        )
        keys = {}
        for m in acks:
            if m["id"] in wanted:
                rows = session.execute(
                    f"SELECT message_id, created_at, writetime(message_id) FROM {ks}.client_msg_ids"
                    " WHERE room = %s AND user_id = %s AND client_msg_id = %s",
                    (room, m["user"]["id"], m["client_msg_id"]),
                    timeout=30,
                )
                keys[m["id"]] = [list(r) for r in rows]
        found["keys_of_missing"] = keys
        head = session.execute(f"SELECT head, writetime(head) FROM {ks}.room_heads WHERE room = %s", (room,))
        found["head"] = [list(r) for r in head]
    except Exception as exc:  # evidence is best effort: say what could not be read
        found["error"] = repr(exc)
    finally:
        cluster.shutdown()
    return found


def partition_rows(session: Any, query: str, room: str, partitions: Iterable[int]) -> list[list[Any]]:
    """Every row of ``query`` (a SELECT bound to the room and one partition number: a stream
    chunk, a message bucket) over ``partitions`` in their order, each row as a list."""
    rows: list[list[Any]] = []
    for partition in partitions:
        rows += [list(r) for r in session.execute(query, (room, partition), timeout=30)]
    return rows


def _offset_of(message: dict[str, Any]) -> int:
    return int(str(message.get("pos", "0")).rpartition(":")[2] or 0)


def _summary(
    record: ChaosRecord,
    acks: list[dict[str, Any]],
    received: dict[str, list[str]],
    kafka: list[dict[str, Any]],
    cql: dict[str, Any],
    attempts: dict[str, list[dict[str, Any]]],
) -> list[str]:
    ids = {m["id"] for m in acks}
    lines = [f"room {record.room} topic {record.topic} keyspace {record.cql.get('SCYLLA_KEYSPACE')}"]
    lines += [f"phase {p['at']} {p['what']}" for p in record.phases]
    lines.append(f"acked {len(acks)}")
    for name, got in received.items():
        lines.append(f"receiver {name}: {len(got)} received, lacks {sorted(ids - set(got))}")
    if record.stored is None:
        lines.append("history was not read")
        return lines
    stored_ids = {m["id"] for m in record.stored}
    missing = [m for m in acks if m["id"] not in stored_ids]
    extra = [m for m in record.stored if m["id"] not in ids]
    lines.append(f"history: {len(record.stored)} rows; lacks {len(missing)} acked; {len(extra)} not acked")
    by_cmid: dict[str, list[dict[str, Any]]] = {}
    for r in kafka:
        if r.get("client_msg_id"):
            by_cmid.setdefault(str(r["client_msg_id"]), []).append(r)
    stream_by_pos = {int(r[0]): r for r in cql.get("stream", [])}
    message_rows = {str(r[0]): r for r in cql.get("messages", [])}
    for m in missing + extra:
        what = "MISSING" if m in missing else "EXTRA"
        pos = _offset_of(m)
        lines.append(f"{what} {m['id']} cmid={m.get('client_msg_id')} pos={m.get('pos')}")
        for a in attempts.get(str(m.get("client_msg_id")), []):
            lines.append(f"  attempt: {a}")
        for r in by_cmid.get(str(m.get("client_msg_id")), []):
            lines.append(f"  kafka record with its cmid: {r}")
        lines.append(f"  stream row at pos {pos}: {stream_by_pos.get(pos)}")
        lines.append(f"  message row: {message_rows.get(m['id'])}")
        lines.append(f"  key row: {cql.get('keys_of_missing', {}).get(m['id'])}")
    repeats = {c: rs for c, rs in by_cmid.items() if len(rs) > 1}
    lines.append(f"client_msg_ids with more than one record in the topic: {len(repeats)}")
    for cmid, rs in sorted(repeats.items()):
        lines.append(f"  {cmid}: {[(r['offset'], r['id'], r['host']) for r in rs]}")
    return lines


def _copy_logs(tmp_path: Path, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for log in tmp_path.glob("*.log"):
        with contextlib.suppress(OSError):
            shutil.copy2(log, where / log.name)


async def keep(
    record: ChaosRecord,
    tmp_path: Path,
    senders: list[Any],
    received: dict[str, list[str]],
    node_events: list[dict[str, Any]],
) -> Path:
    """Copy the run's logs and write what it did and saw to a new evidence directory; its
    path (printed by the caller)."""
    where = RUN_DIR / "chaos-evidence" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    await asyncio.to_thread(_copy_logs, tmp_path, where)
    acks = [m for s in senders for m in s.acked]
    _write_json(where / "sends.json", {s.sub: {"acked": s.acked, "attempts": s.attempts} for s in senders})
    _write_json(where / "received.json", received)
    (where / "node-events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in node_events))
    if record.stored is not None:
        _write_json(where / "history.json", record.stored)
    started = time.monotonic()
    try:
        kafka = await topic_records(record.topic, record.brokers)
    except Exception as exc:
        kafka = [{"error": repr(exc)}]
    _write_json(where / "topic.json", kafka)
    stored_ids = {m["id"] for m in record.stored or []}
    wanted = {m["id"] for m in acks} - stored_ids if record.stored is not None else set()
    cql = await asyncio.to_thread(cql_rows, record.cql, record.room, acks, wanted)
    _write_json(where / "cql.json", cql)
    attempts: dict[str, list[dict[str, Any]]] = {}
    for sender in senders:
        for a in sender.attempts:
            attempts.setdefault(str(a["cmid"]), []).append(a)
    lines = _summary(record, acks, received, kafka, cql, attempts)
    lines.append(f"evidence gathered in {time.monotonic() - started:.1f}s")
    (where / "summary.txt").write_text("\n".join(lines) + "\n")
    return where
