"""A three-node Apache Kafka cluster loses brokers under a steady stream of tasks: the leader
of the busiest partitions is killed and brought back, then every node is restarted in turn.
Every task ends exactly once, nothing is lost or written twice on any output topic (read
``read_committed``), and no service exits. The long run with more faults is
``python -m benchmarks.failover_soak`` (docs/BENCHMARKS.md, "Failover soak")."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.failover_soak import failover_soak
from choreo.kafka.broker import BrokerHandle, broker_kind, kafka_home
from choreo.kafka.cluster import KafkaCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_cluster(
    broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes of this module's own. Started once in CI, on its Apache Kafka
    pass (the session's broker is then Apache Kafka); the cluster is the test's, not that one."""
    if broker_kind(broker.bootstrap) != "kafka":
        pytest.skip(
            "the cluster test runs once, in the suite's Apache Kafka pass; on the embedded "
            "broker it would only repeat that run's cluster"
        )
    if shutil.which("java") is None or not any((kafka_home() / "libs").glob("kafka_2.13-*.jar")):
        pytest.skip(
            "a Kafka cluster from the jars needs Java 17 and the jars (choreo/kafka/pom.xml)"
        )
    logs = tmp_path_factory.mktemp("cluster")
    cluster = KafkaCluster(3, log_path=str(logs / "kafka.log")).start()
    yield cluster
    cluster.stop()


@pytest.mark.timeout(900)
def test_every_task_ends_once_across_a_leader_kill_and_a_rolling_restart(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    report = failover_soak(
        kafka_cluster, tmp_path, ["leader", "rolling"], interval_s=0.5, latency_ms=300, down_s=10
    )
    assert sum(report.kills.values()) == 4, report  # one kill, three restarts
    assert report.tasks > 0, report
    assert report.missing == 0, report
    assert report.doubled == 0, report
    assert report.duplicates == Counter(), report
    assert report.exits == Counter(), report
    assert report.statuses == Counter({"completed": report.tasks}), report
