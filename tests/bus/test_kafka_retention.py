"""The startup check of the events topic's retention and cleanup policy (issue 21,
chatsvc.bus.kafka_retention): the rule on configurations, then on the real broker, where a
replica started on a topic created with a short retention and compaction logs one warning
per problem naming the setting, and a topic kept a week logs none."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from chatsvc.bus.kafka_retention import HOUR_MS, check_events_topic, problems
from chatsvc.settings import Settings, SettingsError
from tests.bus.helpers import log_lines, new_topic, replica_env
from tests.conftest import ServerFactory
from tests.support.servers import TEST_JWT_SECRET

WEEK = 168


def test_the_rule() -> None:
    healthy = {"cleanup.policy": "delete"}
    assert problems({"retention.ms": str(WEEK * HOUR_MS), **healthy}, "t", WEEK) == []
    assert problems({"retention.ms": "-1", **healthy}, "t", WEEK) == [], "-1 keeps records forever"
    short = problems({"retention.ms": str(WEEK * HOUR_MS - 1)}, "t", WEEK)
    assert len(short) == 1 and "KAFKA_EVENTS_MIN_RETENTION_HOURS=168" in short[0]
    assert problems({"retention.ms": "3600000"}, "t", 1) == []
    assert problems({"retention.ms": "0"}, "t", 0) == []
    assert problems({"retention.bytes": "1073741824"}, "t", WEEK) == [], "size bounds are not judged"
    for policy in ("compact", "compact,delete"):
        compacted = problems({"cleanup.policy": policy}, "t", WEEK)
        assert len(compacted) == 1 and "cleanup.policy=delete" in compacted[0]
    assert problems({"retention.ms": "soon"}, "t", WEEK) == [], "an unreadable value is not guessed at"


def test_the_setting(tmp_path: Path) -> None:
    env = {
        "CHATSVC_JWT_SECRET": TEST_JWT_SECRET,
        "CHATSVC_DATA_DIR": str(tmp_path),
        "KAFKA_BROKERS": "127.0.0.1:9092",
    }
    kafka = Settings.from_env(env).kafka
    assert kafka is not None and kafka.events_min_retention_hours == WEEK
    kafka = Settings.from_env({**env, "KAFKA_EVENTS_MIN_RETENTION_HOURS": "24"}).kafka
    assert kafka is not None and kafka.events_min_retention_hours == 24
    for bad in ("-1", "a week", "87601"):
        with pytest.raises(SettingsError, match="KAFKA_EVENTS_MIN_RETENTION_HOURS"):
            Settings.from_env({**env, "KAFKA_EVENTS_MIN_RETENTION_HOURS": bad})


async def create_topic(brokers: str, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


@pytest.mark.integration
async def test_a_replica_warns_once_per_problem_of_a_short_lived_or_compacted_topic(
    kafka: dict[str, str], server_factory: ServerFactory, tmp_path: Path
) -> None:
    brokers = kafka["KAFKA_TEST_PLAINTEXT"]
    topic = new_topic()
    events = f"{topic}.events"
    await create_topic(brokers, events, {"retention.ms": "60000", "cleanup.policy": "compact,delete"})
    # The check advises: the replica starts and is ready anyway.
    server_factory(name="short", wait="/readyz", **replica_env(kafka, tls=False, topic=topic))
    log_path = tmp_path / "short.log"
    retention = log_lines(log_path, "KAFKA_EVENTS_MIN_RETENTION_HOURS=168")
    assert len(retention) == 1 and "retention.ms=60000" in retention[0], log_path.read_text()[-3000:]
    assert len(log_lines(log_path, "set cleanup.policy=delete")) == 1

    # A topic kept a week, deleted not compacted: nothing to say (the test broker's own
    # default, log.retention.hours=6 in scripts/kafka, would be named).
    fine = f"chatsvc.test.{uuid.uuid4().hex[:12]}.events"
    await create_topic(brokers, fine, {"retention.ms": str(WEEK * HOUR_MS), "cleanup.policy": "delete"})
    assert await check_events_topic({"bootstrap_servers": brokers}, fine, WEEK) == []
    # A longer promise than the topic keeps: named.
    assert len(await check_events_topic({"bootstrap_servers": brokers}, fine, WEEK + 1)) == 1
