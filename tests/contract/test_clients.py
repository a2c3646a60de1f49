"""Any Kafka client submits a plain-JSON task and reads its one terminal record.

Clients this project does not use: librdkafka (confluent-kafka, kcat), the Java client
(kafka-clients, a single-file program) and Node (kafkajs). Each writes the task the way
docs/CONTRACT.md says and reads ``results`` until the record keyed by its trace id shows up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle, broker_kind, kafka_home
from tests.conftest import EXAMPLES, RunningMesh

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
KAFKAJS = "kafkajs@2.2.4"
#: A client's run: (bootstrap, tasks topic, results topic, trace id, task JSON) → result JSON.
Client = Callable[[str, str, str, str, str], str]


@pytest.fixture(scope="module")
def mesh(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(EXAMPLES / "writer-editor" / "mesh.yaml") as running:
        yield running


def needs_apache_kafka(broker: BrokerHandle, client: str) -> None:
    """librdkafka cannot talk to the embedded broker (docs/TESTING.md)."""
    if broker_kind(broker.bootstrap) != "kafka":
        pytest.skip(
            f"{client} (librdkafka): the embedded broker's answer to its ApiVersions "
            "request does not parse ('Read underflow'); this client runs on Apache Kafka"
        )


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def confluent(bootstrap: str, tasks: str, results: str, trace_id: str, task: str) -> str:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(tasks, key=trace_id, value=task)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"contract-{trace_id}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([results])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is None or record.error():
                continue
            key = record.key()
            if key is not None and key.decode() == trace_id:
                value: bytes = record.value()
                return value.decode()
    finally:
        consumer.close()
    raise AssertionError(f"confluent-kafka read no terminal record for {trace_id}")


def kcat(bootstrap: str, tasks: str, results: str, trace_id: str, task: str) -> str:
    subprocess.run(
        ["kcat", "-P", "-b", bootstrap, "-t", tasks, "-K", "|", "-X", "acks=all"],
        input=f"{trace_id}|{task}\n",
        text=True,
        check=True,
        timeout=60,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # read to the end, again, until the record is there
        out = subprocess.run(
            [
                "kcat",
                "-C",
                "-b",
                bootstrap,
                "-t",
                results,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%k|%s\\n",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for line in out.splitlines():
            key, _, value = line.partition("|")
            if key == trace_id:
                return value
        time.sleep(0.5)  # kcat -e exits at the end: wait before asking again
    raise AssertionError(f"kcat read no terminal record for {trace_id}")


def java(bootstrap: str, tasks: str, results: str, trace_id: str, task: str) -> str:
    libs = kafka_home() / "libs"
    if shutil.which("java") is None or not any(libs.glob("kafka-clients-*.jar")):
        pytest.skip(
            "the Java client needs java and the jars choreo/kafka/pom.xml fetches (docs/TESTING.md)"
        )
    return run(
        [
            "java",
            "-cp",
            f"{libs}/*",
            str(HERE / "Contract.java"),
            bootstrap,
            tasks,
            results,
            trace_id,
            task,
        ]
    )


def node(bootstrap: str, tasks: str, results: str, trace_id: str, task: str) -> str:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("the Node client needs node and npm")
    cache = kafka_home().parent / "node"
    if not (cache / "node_modules" / "kafkajs").is_dir():
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(cache),
                "--no-audit",
                "--no-fund",
                "--silent",
                KAFKAJS,
            ],
            check=True,
            timeout=300,
        )
    return run(
        ["node", str(HERE / "contract.cjs"), bootstrap, tasks, results, trace_id, task],
        env={"NODE_PATH": str(cache / "node_modules")},
    )


CLIENTS: dict[str, tuple[Client, bool]] = {  # name: (client, refused by the embedded broker)
    "confluent-kafka": (confluent, True),
    "kcat": (kcat, True),
    "java": (java, False),
    "kafkajs": (node, False),
}


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_a_foreign_client_submits_a_task_and_reads_its_one_terminal_record(
    name: str, broker: BrokerHandle, mesh: RunningMesh
) -> None:
    client, refused = CLIENTS[name]
    if name == "kcat" and shutil.which("kcat") is None:
        pytest.skip("kcat is not installed (Debian package kcat; .ci/run installs it)")
    if refused:
        needs_apache_kafka(broker, name)
    trace_id = f"{name}-{uuid.uuid4()}"
    task = json.dumps({"input": f"a task from {name}"})
    result = json.loads(
        client(mesh.bootstrap, mesh.topics.tasks, mesh.topics.results, trace_id, task)
    )
    assert result["trace_id"] == trace_id
    assert result["status"] == "completed"
    assert len(mesh.results(trace_id)) == 1
