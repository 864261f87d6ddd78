"""The events reader's fetch settings (issue 26): unit test with a recording double of the
consumer class, no broker (the reader itself is tested on the real broker in
test_kafka_streams.py and test_kafka_history.py)."""

from __future__ import annotations

from typing import Any

import pytest

from chatsvc.bus import kafka_log
from chatsvc.bus.kafka_log import KafkaRoomLog


class Refused(Exception):
    pass


async def test_the_events_reader_fetches_eagerly_whatever_the_fan_out_bus_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []

    class Consumer:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        async def start(self) -> None:
            raise Refused  # no broker here: only the settings matter

        async def stop(self) -> None:
            return None

    monkeypatch.setattr(kafka_log, "AIOKafkaConsumer", Consumer)
    log = KafkaRoomLog("t", lambda: {"bootstrap_servers": ["127.0.0.1:1"]})
    with pytest.raises(Refused):
        await log._start_consumer({"bootstrap_servers": ["127.0.0.1:1"]}, [0, 1])
    (options,) = made
    # The broker answers as soon as one record is committed: no batching wait on the ack
    # path or on live delivery, and an idle reader polls at most twice a second.
    assert options["fetch_min_bytes"] == 1
    assert 0 < options["fetch_max_wait_ms"] <= 500
    assert options["group_id"] is None
