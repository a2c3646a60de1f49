"""The Apache Kafka release the CLI looks for is the one choreo/kafka/pom.xml fetches."""

from __future__ import annotations

import re

from choreo.kafka.broker import KAFKA_VERSION
from tests.conftest import REPO


def test_the_pom_fetches_the_version_the_cli_runs() -> None:
    pom = (REPO / "choreo" / "kafka" / "pom.xml").read_text()
    assert re.findall(r"<kafka.version>(.+)</kafka.version>", pom) == [KAFKA_VERSION]
