"""Startup check of the events topic's retention and cleanup policy (issue 21).

The events topic is the room streams' log; history is written from it by the history
writer, which rides out a store (CQL) outage by resuming from its last committed offset. A
record the topic deletes before the writer has written it is lost to history. The rule:

* ``retention.ms`` (``-1``: forever) must be at least ``KAFKA_EVENTS_MIN_RETENTION_HOURS``
  (default 168, a week: Kafka's own default), the longest store outage the deployment
  promises to ride out without losing history;
* ``cleanup.policy`` must be ``delete``: compaction keeps only each key's newest record,
  and the key is the room, so a compacted stream loses every message but each room's last.

``retention.bytes`` (a size bound per partition) is not checked: whether it holds a week
depends on the traffic, not on the topic's configuration (README says how to size it).

Each problem is one warning at startup naming the setting to change; the replica starts
anyway (the topic may be managed by someone else, and live chat does not depend on it).
A broker that refuses to describe the topic (ACLs) is logged once at info.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

log = logging.getLogger(__name__)

#: The admin client takes only these of the shared client options.
_ADMIN_OPTIONS = (
    "bootstrap_servers",
    "client_id",
    "request_timeout_ms",
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)
CHECK_TIMEOUT_SECONDS = 10.0
HOUR_MS = 3_600_000


def problems(configs: dict[str, str], topic: str, min_retention_hours: int) -> list[str]:
    """What is wrong with ``topic``'s ``configs`` for the room streams (see the module
    docstring), each a sentence naming what to change; [] when nothing is."""
    found = []
    minimum_ms = min_retention_hours * HOUR_MS
    retention = _number(configs.get("retention.ms"))
    if retention is not None and 0 <= retention < minimum_ms:
        found.append(
            f"events topic {topic}: retention.ms={retention} ({retention / HOUR_MS:g} h) is shorter than "
            f"KAFKA_EVENTS_MIN_RETENTION_HOURS={min_retention_hours}: a store outage longer than the "
            "retention loses history (records deleted before the history writer wrote them); raise "
            "the topic's retention.ms or lower the setting"
        )
    policy = configs.get("cleanup.policy")
    if policy is not None and "compact" in policy:
        found.append(
            f"events topic {topic}: cleanup.policy={policy} compacts the room streams (only each "
            "room's newest record would survive); set cleanup.policy=delete"
        )
    return found


def _number(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def describe(options: dict[str, Any], topic: str) -> dict[str, str]:
    """``topic``'s configuration as the broker reports it (bounded)."""
    admin = AIOKafkaAdminClient(**{k: v for k, v in options.items() if k in _ADMIN_OPTIONS})
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await admin.start()
            wanted = {"retention.ms": None, "cleanup.policy": None}
            resource = ConfigResource(ConfigResourceType.TOPIC, topic, wanted)
            responses = await admin.describe_configs([resource])
    finally:
        await admin.close()
    configs: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            error_code, message = resource[0], resource[1]
            if error_code:
                raise RuntimeError(f"DescribeConfigs error {error_code}: {message}")
            for entry in resource[4]:
                configs[str(entry[0])] = "" if entry[1] is None else str(entry[1])
    return configs


async def check_events_topic(options: dict[str, Any], topic: str, min_retention_hours: int) -> list[str]:
    """Describe ``topic`` and log a warning per problem; the problems (for tests). Never
    raises but for cancellation: the check advises, it does not gate startup."""
    try:
        configs = await describe(options, topic)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.info("events topic %s: retention not checked (%s)", topic, type(exc).__name__)
        return []
    found = problems(configs, topic, min_retention_hours)
    for problem in found:
        log.warning("%s", problem)
    return found
