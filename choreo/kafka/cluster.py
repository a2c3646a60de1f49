"""A multi-node Apache Kafka cluster from the jars: every node a KRaft broker and controller.

What a production cluster gives the mesh, on one machine: three nodes (by default) that are
each other's controller quorum, topics replicated three times with two in sync required
(``default.replication.factor=3``, ``min.insync.replicas=2``, the transaction and offset logs
too), and Kafka 4.x's server-side transaction defence on (``transaction.version=2``, KIP-890).
A node can be killed, stopped and started again on its storage, which is how the failover test
and the soak (benchmarks/failover_soak.py) take brokers away under load.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
from pathlib import Path

from choreo.kafka.broker import ApacheKafka, cluster_id, end_process
from choreo.kafka.errors import BrokerError

log = logging.getLogger(__name__)

#: Settings of a replicated cluster, over the single node's: three copies of everything, two of
#: them in sync before a write is acknowledged (acks=all), so one node may be lost at any time.
_REPLICATED = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    # a node back from the dead catches up before leading again, the cluster rebalances leaders
    "unclean.leader.election.enable": "false",
    "leader.imbalance.check.interval.seconds": "10",
}


class ClusterNode(ApacheKafka):
    """One node of a :class:`KafkaCluster`: a single node's settings plus its id, the
    cluster's quorum and replication. Unlike a single node, it can be killed or stopped and
    started again on the storage it has (:meth:`kill`, :meth:`halt`, :meth:`resume`)."""

    def __init__(self, node_id: int, log_path: str | None = None, heap: str = "384m") -> None:
        super().__init__(log_path=log_path, heap=heap)
        self.node_id = node_id
        self.voters = ""
        self._java_command: list[str] = []
        self._config_path: Path | None = None

    def _write_config(self) -> Path:
        path = super()._write_config()
        extra = {
            **_REPLICATED,
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
        }
        with path.open("a") as config:  # later keys win in a Java properties file
            config.writelines(f"{k}={v}\n" for k, v in extra.items())
        return path

    def _launch(self, java: list[str], config: Path) -> None:
        self._java_command, self._config_path = java, config
        super()._launch(java, config)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    def kill(self) -> None:
        """SIGKILL the node, as a machine's loss would; its storage stays for :meth:`resume`."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def halt(self) -> None:
        """A controlled shutdown (SIGTERM: leadership moved away first), storage kept."""
        if self._process is not None:
            end_process(self._process, grace_s=60)
            self._process = None

    def resume(self, timeout: float = 120.0) -> None:
        """Start the node again on its storage; return once it answers."""
        if self._config_path is None:
            raise BrokerError(f"node {self.node_id} was never started")
        super()._launch(self._java_command, self._config_path)
        self.wait(timeout)


class KafkaCluster:
    """``size`` Apache Kafka nodes on loopback, each a broker and a voter of the controller
    quorum, formatted with one cluster id; the storage goes on :meth:`stop`. Node *N*'s log
    is appended to ``{log_path}.nodeN``.

    ``bootstrap`` lists every node, as clients of a real cluster are configured. Raises
    :class:`BrokerError` like :class:`ApacheKafka` (Java or the jars missing, a node not
    answering within ``timeout`` seconds).
    """

    def __init__(self, size: int = 3, log_path: str | None = None, heap: str = "384m") -> None:
        if size < 1:
            raise BrokerError(f"a cluster needs at least one node, not {size}")
        self.nodes = [
            ClusterNode(
                node_id,
                log_path=f"{log_path}.node{node_id}" if log_path else None,
                heap=heap,
            )
            for node_id in range(1, size + 1)
        ]
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.voters = voters

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start(self, timeout: float = 240.0) -> KafkaCluster:
        """Format and start every node, then wait until each answers: a node serves only
        once a quorum of controllers runs, so none is waited for before all are started."""
        cluster = cluster_id()
        try:
            for node in self.nodes:
                node.start(timeout, cluster=cluster, wait=False)
            for node in self.nodes:
                node.wait(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Apache Kafka cluster listening", extra={"bootstrap": self.bootstrap})
        return self

    def stop(self) -> None:
        """Stop every node at once (no controlled shutdown: the cluster goes as a whole)."""
        for node in self.nodes:
            if node._process is not None:
                node._process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned varint of the Kafka protocol's flexible versions: (value, next offset)."""
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def active_controller(host: str, port: int, timeout: float = 5.0) -> int:
    """The node id of the active controller: the leader of the metadata log
    (``__cluster_metadata``), asked with DescribeQuorum v0 (KIP-595), which any node
    answers. The admin client has no call for it; the metadata answer's "controller" is any
    live broker under KRaft (KIP-919). Raises ``OSError`` when nothing answers and
    ``ValueError`` on an error code."""
    client, topic = b"choreo", b"__cluster_metadata"
    # request header v2 (client id, no tags), then topics[name, partitions[index]], no tags
    request = (
        struct.pack(">hhih", 55, 0, 1, len(client))
        + client
        + b"\x00\x02"
        + bytes([len(topic) + 1])
        + topic
        + b"\x02"
        + struct.pack(">i", 0)
        + b"\x00\x00\x00"
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        with sock.makefile("rb") as answer:
            (size,) = struct.unpack(">i", answer.read(4))
            data = answer.read(size)
    at = 5  # correlation id, the response header's (empty) tags
    (error,) = struct.unpack_from(">h", data, at)
    _, at = _uvarint(data, at + 2)  # topics
    length, at = _uvarint(data, at)
    _, at = _uvarint(data, at + length - 1)  # partitions
    _, partition_error, leader = struct.unpack_from(">ihi", data, at)
    if error or partition_error:
        raise ValueError(f"DescribeQuorum answered error code {error or partition_error}")
    return int(leader)
