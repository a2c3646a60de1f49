"""Fixtures of the exactly-once tests."""

from __future__ import annotations

import pytest

from choreo.kafka.broker import BrokerHandle, broker_kind


@pytest.fixture
def transactional(broker: BrokerHandle) -> BrokerHandle:
    """The session broker, when it has transactions (Apache Kafka); else the test skips."""
    if broker_kind(broker.bootstrap) != "kafka":
        pytest.skip(
            "exactly-once output needs broker transactions (Apache Kafka); the "
            "embedded broker has none, and there a killed service may write a record "
            "twice, which readers absorb by its id (docs/ARCHITECTURE.md)"
        )
    return broker
