"""2,000 bad records to the tasks topic and an agent topic: nothing exits, counts add up.

Every valid task ends with exactly one terminal record; every invalid record is on the
dead-letter topic exactly once, with a reason, from the consumer of its topic.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from choreo.kafka.clients import read_topic
from choreo.schemas import DeadLetter, Envelope, Task, TerminalResult, decode
from tests.conftest import RunningMesh, wait_until
from tests.liveness_keeper.fuzz import Fuzzed, fuzz
from tests.liveness_keeper.support import WRITER_EDITOR

pytestmark = pytest.mark.integration

PER_TOPIC = 1_000
Offset = tuple[str, int, int]


def send_all(mesh: RunningMesh, topic: str, records: list[Fuzzed]) -> dict[Offset, Fuzzed]:
    """Produce ``records`` to ``topic``; return each by where it landed."""
    producer = KafkaProducer(
        bootstrap_servers=mesh.bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    futures = [(producer.send(topic, key=r.key, value=r.value), r) for r in records]
    placed = {}
    for future, record in futures:
        meta = future.get(timeout=120)
        placed[(topic, meta.partition, meta.offset)] = record
    producer.close()
    return placed


@pytest.mark.timeout(1200)
def test_fuzzed_records_end_in_results_or_dead_letters_exactly_once(
    start_test_mesh: Callable[..., RunningMesh],
) -> None:
    mesh = start_test_mesh(WRITER_EDITOR)
    mesh.result(mesh.submit("every service has joined"), timeout=120)
    rng = random.Random(20261129)
    agent_topic = mesh.topics.event("draft.ready")
    sent = {
        **send_all(mesh, mesh.topics.tasks, fuzz(rng, PER_TOPIC, Task)),
        **send_all(mesh, agent_topic, fuzz(rng, PER_TOPIC, Envelope)),
    }
    invalid = {at for at, r in sent.items() if not r.valid}
    valid = {r.key.decode() for r in sent.values() if r.valid and r.key}
    assert len(sent) == 2 * PER_TOPIC and len(invalid) > 1_800 and len(valid) > 50

    def letters() -> list[DeadLetter]:
        records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.dlq))
        return [decode(r.value, DeadLetter) for r in records]

    def results() -> Counter[str]:
        records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.results))
        return Counter(decode(r.value, TerminalResult).trace_id for r in records)

    def unsettled() -> Counter[str]:
        """What has not ended yet, by topic and kind of record."""
        parked = {(d.topic, d.partition, d.offset) for d in letters()}
        finished = set(results())
        return Counter(
            f"{at[0]}: {sent[at].kind}"
            for at in sent
            if (at in invalid and at not in parked)
            or (sent[at].valid and sent[at].key.decode() not in finished)
        )

    left: Counter[str] = Counter()

    def settled() -> bool:
        left.clear()
        left.update(unsettled())
        return not left

    try:
        wait_until(settled, 900, interval=10, message="every fuzzed record to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not ended: {dict(left)}") from None
    fuzzed_letters = Counter(
        (d.topic, d.partition, d.offset)
        for d in letters()
        if (d.topic, d.partition, d.offset) in sent
    )
    assert set(fuzzed_letters) == invalid  # no valid record was refused
    assert max(fuzzed_letters.values()) == 1  # and none refused twice
    assert all(d.reason for d in letters())
    consumers = {
        (d.topic, d.consumer) for d in letters() if (d.topic, d.partition, d.offset) in invalid
    }
    assert consumers == {(mesh.topics.tasks, "keeper"), (agent_topic, "agent:editor")}
    ended = results()
    assert all(ended[trace_id] == 1 for trace_id in valid)
    assert mesh.failed() == []
