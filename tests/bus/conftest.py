"""Fixtures of the Kafka bus tests."""

from __future__ import annotations

import pytest

from tests.support.services import kafka_env


@pytest.fixture
def kafka() -> dict[str, str]:
    """The running test broker's ``KAFKA_TEST_*`` values (fails with the start command if absent)."""
    return kafka_env()
