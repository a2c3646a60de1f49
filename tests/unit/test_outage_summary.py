"""A broker's loss makes the Kafka client log every retry; a service writes one line for the
whole outage instead, saying what was retried, and its own lines pass as they come."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiokafka.errors import NodeNotReadyError

from choreo.observe.logs import JsonFormatter, OutageSummary
from tests.conftest import wait_until


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, OutageSummary]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("keeper"))
    # quiet long enough that a loaded machine's pauses between two lines do not split an outage
    summary = OutageSummary(handler, quiet_s=2.0)
    handler.addFilter(summary)
    loggers = [logging.getLogger(n) for n in ("aiokafka.conn", "aiokafka.producer", "choreo.x")]
    client = logging.getLogger("aiokafka")
    level = client.level
    client.setLevel(logging.WARNING)  # as a service sets it (the CLI silences it)
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    yield out, summary
    for logger in loggers:
        logger.removeHandler(handler)
        logger.propagate = True
    client.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_an_outage_of_client_retries_is_one_line_naming_what_was_retried(
    captured: tuple[io.StringIO, OutageSummary],
) -> None:
    out, _ = captured
    conn, producer = logging.getLogger("aiokafka.conn"), logging.getLogger("aiokafka.producer")
    for port in range(300):
        conn.error("Unable connect to node with id %s: %s", 2, f"refused {port}")
    for partition in range(40):
        producer.warning(
            "Got error produce response on topic-partition %s, retrying. Error: %s",
            partition,
            NodeNotReadyError,
        )
    logging.getLogger("choreo.x").warning("keeper paused its partitions")
    assert [line["msg"] for line in lines(out)] == ["keeper paused its partitions"]

    (summary,) = wait_until(
        lambda: [line for line in lines(out) if line["logger"] == "choreo.kafka"], 30
    )
    assert summary["level"] == "warning"
    assert summary["lines"] == 340
    assert summary["retried"] == {
        "Unable connect to node with id …: …": 300,
        "Got error produce response on topic-partition …, retrying. Error: NodeNotReadyError": 40,
    }
    assert len(lines(out)) == 2


def test_a_second_outage_gets_a_line_of_its_own_and_exit_writes_one_held_back(
    captured: tuple[io.StringIO, OutageSummary],
) -> None:
    out, summary = captured
    conn = logging.getLogger("aiokafka.conn")
    conn.error("Unable connect to node with id %s: %s", 1, "refused")
    wait_until(lambda: len(lines(out)) == 1, 30)
    conn.error("Unable connect to node with id %s: %s", 3, "refused")
    conn.error("Unable connect to node with id %s: %s", 3, "refused")
    summary.flush()  # the service exits before the client went quiet
    assert [line["lines"] for line in lines(out)] == [1, 2]


def test_an_error_of_the_mesh_comes_after_the_retries_that_led_to_it(
    captured: tuple[io.StringIO, OutageSummary],
) -> None:
    out, _ = captured
    conn, mesh = logging.getLogger("aiokafka.conn"), logging.getLogger("choreo.x")
    conn.error("Topic %s is not authorized for this client", "t")
    mesh.warning("keeper paused its partitions")  # a warning passes and holds nothing back
    conn.error("Topic %s is not authorized for this client", "t")
    mesh.error("the broker refused this service; exiting")
    assert [(line["msg"], line.get("lines")) for line in lines(out)] == [
        ("keeper paused its partitions", None),
        ("Kafka client retried through a broker outage", 2),
        ("the broker refused this service; exiting", None),
    ]
