"""The watchdog parks any record it cannot handle and keeps watching.

Before, only a record that failed to decode was dead-lettered; anything else raised out of
the faust agent (a tombstone, for one, has no bytes to decode at all).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from choreo.kafka.clients import read_topic
from choreo.schemas import DeadLetter, decode
from tests.conftest import RunningMesh, wait_until
from tests.liveness_keeper.support import WRITER_EDITOR

pytestmark = pytest.mark.integration


def test_a_tombstone_on_the_hops_topic_is_dead_lettered_and_the_watchdog_lives(
    start_test_mesh: Callable[..., RunningMesh],
) -> None:
    mesh = start_test_mesh(WRITER_EDITOR, watchdog=True)
    producer = KafkaProducer(bootstrap_servers=mesh.bootstrap, acks="all")
    producer.send(mesh.topics.hops, key=b"tombstone-trace", value=None).get(timeout=60)
    producer.close()

    def parked() -> list[DeadLetter]:
        records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.dlq))
        return [
            d
            for d in (decode(r.value, DeadLetter) for r in records)
            if d.consumer == "watchdog" and d.key == "tombstone-trace"
        ]

    letters = wait_until(parked, 180, interval=2, message="the watchdog's dead letter")
    assert len(letters) == 1 and letters[0].reason.startswith("watchdog error: ")
    assert mesh.result(mesh.submit("watched after the tombstone")).status == "completed"
    assert mesh.failed() == []  # no service ended: the watchdog runs on
