"""``choreo`` turns each kind of error into its exit code in one place: 2 when the input is bad,
1 when the mesh or broker did not do it; anything else is a bug and keeps its traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

import choreo.errors
from choreo.cli.common import UsageError
from choreo.cli.main import failure, main
from choreo.observe.settings import Settings
from choreo.schemas import Usage
from tests.unit.support import WRITER_EDITOR, minimal_mesh

#: The errors that mean "fix what you gave and run again".
BAD_INPUT = {"SpecError", "SettingsError", "ModelConfigError", "ScriptError", "NoBrokerAddress"}


def instance(kind: type[Exception]) -> Exception:
    """An instance of ``kind`` with a message, whatever its constructor takes."""
    if kind is choreo.errors.ModelError:
        return kind("timeout", "the model did not answer", attempts=1)
    if kind is choreo.errors.RecordTooLarge:
        return kind("a step record", 2_000_000, 1_000_000)
    if kind is choreo.errors.OverBudget:
        return kind("budget.tokens", {"left": 3}, Usage())
    if kind is choreo.errors.ResultTimeout:
        return kind("t-1", 2.5)
    if kind is choreo.errors.ServiceFailed:
        return kind("writer-1", ValueError("what went wrong"))
    if kind is choreo.errors.MeshNotReady:
        return kind(["prefix.keeper"], 60.0)
    if kind is choreo.errors.UndeclaredRead:
        return kind("lookup", "notes", ["order"])
    return kind("what went wrong")


@pytest.mark.parametrize(
    "name", sorted(choreo.errors.__all__), ids=lambda name: f"{name}-exits-2-or-1"
)
def test_every_error_of_the_tree_is_one_line_and_an_exit_code(name: str) -> None:
    error = instance(getattr(choreo.errors, name))
    assert failure(error, Settings()) == (2 if name in BAD_INPUT else 1, str(error))


def test_usage_errors_exit_2_and_what_is_not_there_exits_1() -> None:
    assert failure(UsageError("--agent NAME is required"), None) == (
        2,
        "--agent NAME is required",
    )
    missing = choreo.errors.TraceNotFound("no trace 't-1'")
    assert failure(missing, None) == (1, "no trace 't-1'")


def test_a_broker_that_does_not_answer_or_refuses_exits_1_naming_it() -> None:
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    code, message = failure(KafkaConnectionError("refused"), settings) or (0, "")
    assert code == 1 and message.startswith("no broker answers at 127.0.0.1:1 (check KAFKA_")
    code, message = failure(UnknownTopicOrPartitionError("t"), settings) or (0, "")
    assert code == 1
    assert message.startswith("the broker refused the request: UnknownTopicOrPartitionError")


def test_an_error_that_is_no_users_to_fix_is_left_to_its_traceback() -> None:
    assert failure(RuntimeError("a bug"), Settings()) is None
    assert failure(ValueError("a bug"), Settings()) is None


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with no running mesh and no broker address."""
    monkeypatch.chdir(tmp_path)
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(variable, raising=False)
    yield tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, " ".join(capsys.readouterr().err.split())


def test_an_invalid_spec_exits_2_naming_the_field(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = minimal_mesh()
    mesh["agents"][0]["model"] = "huge"
    (cli / "mesh.yaml").write_text(yaml.safe_dump(mesh))
    code, err = run(["topics", "--mesh", "mesh.yaml"], capsys)
    assert code == 2
    assert "agents[worker].model: unknown model tier 'huge'" in err


def test_a_missing_argument_exits_2(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["run", "agent", "--mesh", str(WRITER_EDITOR)], capsys)
    assert code == 2
    assert err.startswith("error: choreo run agent: --agent NAME is required")


def test_a_bad_environment_variable_exits_2_naming_it(
    cli: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_MAX_IN_FLIGHT", "lots")
    code, err = run(["state", "some-trace"], capsys)
    assert code == 2
    assert err.startswith("error: bad environment: CHOREO_MAX_IN_FLIGHT=lots")


def test_a_bad_model_script_exits_2_naming_the_file(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli / "model.yaml").write_text("rules: [1, 2\n")
    code, err = run(["model-server", "model.yaml"], capsys)
    assert code == 2
    assert err.startswith("error: model.yaml:2:1: not valid YAML")


def test_a_broker_that_cannot_start_exits_1_saying_what_is_missing(
    cli: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_KAFKA_HOME", str(cli / "no-kafka"))
    monkeypatch.setenv("PATH", str(cli / "no-tools"))  # no Maven to fetch the jars with
    code, err = run(["broker", "--kafka"], capsys)
    assert code == 1
    assert err.startswith("error: Apache Kafka's jars are not in")
    assert "fetching them needs Maven (Debian: apt-get install maven)" in err
