"""Installed from its wheel, the distribution claims one import name, ``choreo``, and works from
an application's folder that has its own ``services`` and ``schemas`` packages.

The wheel is built from this checkout and installed, without its dependencies, into a fresh
venv; the dependencies come from the test environment's site-packages through a path entry,
which adds the directory but runs none of its ``.pth`` files, so the checkout's editable
install cannot leak in: ``choreo`` can only come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle, broker_kind
from tests.conftest import EXAMPLES, REPO, processes_mentioning, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Installed:
    """A fresh venv holding the built wheel."""

    wheel: Path
    bin: Path

    def choreo(self) -> list[str]:
        return [str(self.bin / "choreo")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("choreo_mesh-*.whl")
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield Installed(wheel, env_dir / "bin")


@pytest.fixture
def app_folder(tmp_path: Path) -> Path:
    """An application with the two most common package names of its own."""
    app = tmp_path / "app"
    for name in ("services", "schemas"):
        (app / name).mkdir(parents=True)
        (app / name / "__init__.py").write_text(f'raise ImportError("the app\'s own {name}")\n')
    return app


def test_the_wheel_installs_one_top_level_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert wheel.read(top_level).decode().split() == ["choreo"]
    assert {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    } == {"choreo"}
    # what the services read at run time is in the package too: the example meshes
    assert "choreo/examples/writer-editor/mesh.yaml" in names
    assert "choreo/examples/support-desk/orders.py" in names


def test_up_from_an_application_folder_completes_a_task(
    installed: Installed, app_folder: Path, broker: BrokerHandle, tmp_path: Path
) -> None:
    mesh_dir = tmp_path / "writer-editor"
    shutil.copytree(EXAMPLES / "writer-editor", mesh_dir)
    mesh = mesh_dir / "mesh.yaml"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": "wheel-up",
        "COLUMNS": "200",
    }
    up = subprocess.Popen(
        [
            *installed.choreo(),
            "up",
            str(mesh),
            "--no-watchdog",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        cwd=app_folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: len(processes_mentioning(str(mesh_dir))) >= 4,
            60,
            message="the mesh's processes",
        )
        done = subprocess.run(
            [
                *installed.choreo(),
                "submit",
                str(mesh),
                "from the app folder",
                "--wait",
                "--timeout",
                "120",
            ],
            cwd=app_folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed" in done.stdout
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert processes_mentioning(str(mesh_dir)) == []


def test_demo_runs_from_the_installed_wheel(
    installed: Installed, app_folder: Path, broker: BrokerHandle, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": "wheel-demo",
        "COLUMNS": "120",
    }
    out = subprocess.run(
        [*installed.choreo(), "demo", "--log-dir", str(tmp_path / "logs")],
        cwd=app_folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status  completed" in out.stdout


@pytest.mark.timeout(600)
def test_broker_kafka_from_the_wheel_fetches_its_jars_and_answers(
    installed: Installed, tmp_path: Path
) -> None:
    """A user with Java and Maven and nothing else: the first `choreo broker --kafka` fetches
    the pinned jars (each download reported), then the broker answers as Apache Kafka."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("Apache Kafka from its jars needs Java 17 and Maven on PATH")
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert "<kafka.version>" in wheel.read("choreo/kafka/pom.xml").decode()
    env = {**os.environ, "CHOREO_KAFKA_HOME": str(tmp_path / "kafka-home")}
    started = subprocess.Popen(
        [*installed.choreo(), "broker", "--kafka"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert started.stderr is not None
        address = started.stderr.readline().strip()  # the address, once it answers
        assert address.startswith("127.0.0.1:"), address + started.stderr.read()
        assert broker_kind(address) == "kafka"
        assert any((tmp_path / "kafka-home").glob("kafka-*/libs/kafka_2.13-*.jar"))
    finally:
        # SIGTERM, not Ctrl-C's SIGINT: a test run in the background has SIGINT ignored, and
        # its children inherit that, as POSIX shells do for background jobs
        started.send_signal(signal.SIGTERM)
        output, _ = started.communicate(timeout=60)
    assert "fetching Apache Kafka" in output
    assert "kafka_2.13" in output  # its download, reported
