"""The mesh spec fails at load time, naming the bad field, for every kind of mistake."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from choreo.spec.mesh import SpecError, load_mesh, parse_mesh
from tests.unit.support import WRITER_EDITOR, minimal_mesh

Mesh = dict[str, Any]


def test_writer_editor_example_loads() -> None:
    spec = load_mesh(WRITER_EDITOR)
    assert [a.name for a in spec.agents] == ["writer", "editor"]
    assert spec.entry == ["draft.requested"]
    assert spec.agent_topics == ["draft.ready", "draft.requested", "revision.requested"]
    assert spec.state["revisions"].reducer == "add"
    assert spec.budgets.max_hops == 12


def test_relative_script_resolves_against_the_mesh_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "meshes"
    folder.mkdir()
    data = minimal_mesh()
    data["models"] = {
        "local": {"model": "m", "script": "scripts/model.yaml"},
        "fixed": {"model": "m", "script": str(tmp_path / "abs.yaml")},
    }
    for agent in data["agents"]:
        agent["model"] = "local"
    (folder / "mesh.yaml").write_text(_yaml(data))
    (folder / "scripts").mkdir()
    (folder / "scripts" / "model.yaml").write_text("model: m\n")
    (tmp_path / "abs.yaml").write_text("model: m\n")
    monkeypatch.chdir(tmp_path)  # the process's folder must not matter

    spec = load_mesh("meshes/mesh.yaml")

    assert spec.models["local"].script == folder / "scripts" / "model.yaml"
    assert spec.models["fixed"].script == tmp_path / "abs.yaml"


def test_example_script_exists_after_loading() -> None:
    script = load_mesh(WRITER_EDITOR).models["scripted"].script
    assert script is not None and script.is_file()


def _set(path: str, value: Any) -> Callable[[Mesh], None]:
    """A mutation that sets one dotted path (list indexes as numbers) of the mesh."""

    def mutate(mesh: Mesh) -> None:
        *parents, last = path.split(".")
        node: Any = mesh
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _duplicate_agent(mesh: Mesh) -> None:
    mesh["agents"][1]["name"] = "worker"


INVALID: dict[str, tuple[Callable[[Mesh], None], list[str]]] = {
    "unknown model tier": (
        _set("agents.1.model", "huge"),
        ["agents[checker].model", "unknown model tier 'huge'"],
    ),
    "topic nobody emits": (
        _set("agents.0.subscribe", ["work.requested", "ghost"]),
        ["agents[worker].subscribe[#2]", "nothing emits 'ghost'"],
    ),
    "emit nobody subscribes": (
        _set("agents.0.routes.0.emit", "void"),
        ["agents[worker].routes[#1].emit", "subscribes to 'void'"],
    ),
    "entry nobody subscribes": (
        _set("entry", ["work.requested", "orphan"]),
        ["entry[#2]", "no agent subscribes to 'orphan'"],
    ),
    "duplicate agent names": (
        _duplicate_agent,
        ["agents[worker].name", "duplicate agent name 'worker'"],
    ),
    "bad regex in when": (
        _set("agents.1.routes.0.when", "^(OK"),
        ["agents[checker].routes[#1].when", "not a regular expression"],
    ),
    "route with two actions": (
        _set("agents.1.routes.0.emit", "work.requested"),
        ["agents[checker].routes[#1]", "exactly one of emit, finish, fail"],
    ),
    "route with no action": (
        _set("agents.0.routes.0", {"when": "x"}),
        ["agents[worker].routes[#1]", "exactly one of emit, finish, fail"],
    ),
    "unknown reducer": (
        _set("state.notes.reducer", "concat"),
        ["state.notes.reducer", "unknown reducer 'concat'"],
    ),
    "reducer module missing": (
        _set("state.notes.reducer", "no_such_module_xyz:fold"),
        ["state.notes.reducer", "cannot import reducer"],
    ),
    "reducer function missing": (
        _set("state.notes.reducer", "json:no_such_function"),
        ["state.notes.reducer", "cannot import reducer"],
    ),
    "bad agent name": (_set("agents.0.name", "Worker One"), ["agents[Worker One].name", "pattern"]),
    "negative max_hops": (_set("budgets", {"max_hops": -1}), ["budgets.max_hops"]),
    "negative max_cost": (_set("budgets", {"max_cost": -0.5}), ["budgets.max_cost"]),
    "negative max_seconds": (_set("budgets", {"max_seconds": -5}), ["budgets.max_seconds"]),
    "negative max_tokens": (_set("budgets", {"max_tokens": -10}), ["budgets.max_tokens"]),
    "typo at top level": (_set("budget", {"max_hops": 3}), ["budget", "Extra inputs"]),
    "typo in an agent": (
        _set("agents.0.subscibe", ["x"]),
        ["agents[worker].subscibe", "Extra inputs"],
    ),
    "typo in a route": (
        _set("agents.1.routes.0.outptu", "notes"),
        ["agents[checker].routes[#1].outptu", "Extra inputs"],
    ),
    "typo in a state field": (
        _set("state.count.reduce", "add"),
        ["state.count.reduce", "Extra inputs"],
    ),
    "unknown placeholder in agent writes": (
        _set("agents.0.writes", {"notes": "{outptu}"}),
        ["agents[worker].writes", "outptu"],
    ),
    "unknown placeholder in route writes": (
        _set("agents.1.routes.1.writes", {"notes": "{agnet} says"}),
        ["agents[checker].routes[#2].writes", "agnet"],
    ),
    "finish output names no field": (
        _set("agents.1.routes.0.output", "drafts"),
        ["agents[checker].routes[#1].output", "no state field 'drafts'"],
    ),
    "read of a misspelled field": (
        _set("agents.0.reads", ["input", "nots"]),
        ["agents[worker].reads[#2]", "no state field 'nots'", "did you mean 'notes'"],
    ),
    "write to an undeclared field": (
        _set("agents.0.writes", {"ntes": "{output}"}),
        ["agents[worker].writes.ntes", "'ntes' is not declared", "did you mean 'notes'"],
    ),
    "misspelled emitted type": (
        _set("agents.0.routes.0.emit", "work.dne"),
        ["agents[worker].routes[#1].emit", "'work.dne'", "did you mean 'work.done'"],
    ),
}

#: A list position printed the way Python counts (``agents.1``, ``routes[0]``): never shown.
ZERO_BASED = re.compile(r"\.\d+(?=[.:\[]|$)|\[\d+\]", re.M)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_names_the_field(case: str) -> None:
    mutate, expected = INVALID[case]
    mesh = minimal_mesh()
    parse_mesh(mesh, "mesh.yaml")  # the base is valid: only the mutation can fail it
    mutate(mesh)
    with pytest.raises(SpecError) as caught:
        parse_mesh(mesh, "mesh.yaml")
    message = str(caught.value)
    assert message.startswith("mesh.yaml: invalid mesh spec")
    for part in expected:
        assert part in message
    assert not ZERO_BASED.search(message), message
    assert len(message.splitlines()) == 2, message  # one mistake, one line


def test_errors_name_the_file_and_line_of_each_mistake(tmp_path: Path) -> None:
    data = minimal_mesh()
    data["agents"][0]["routes"][0]["emit"] = "work.dne"  # misspelled where it is emitted
    data["agents"][1]["routes"][0]["output"] = "drafts"
    path = tmp_path / "mesh.yaml"
    path.write_text(_yaml(data))
    lines = path.read_text().splitlines()

    def line_of(text: str) -> int:
        return next(n for n, line in enumerate(lines, 1) if text in line)

    with pytest.raises(SpecError) as caught:
        load_mesh(path)
    message = str(caught.value).splitlines()
    assert message[1:] == [
        f"  {path}:{line_of('emit: work.dne')}: agents[worker].routes[#1].emit: no agent nor "
        "join subscribes to 'work.dne' (did you mean 'work.done'?)",
        f"  {path}:{line_of('output: drafts')}: agents[checker].routes[#1].output: no state "
        "field 'drafts': not declared in state nor written by any agent (known: count, "
        "guidance, input, metadata, notes); a field a task brings in its initial_state is "
        "declared in state",
    ]  # in the order of the file, the correct subscriber of work.done never blamed


def test_a_missing_model_script_is_a_spec_error_at_its_line(tmp_path: Path) -> None:
    data = minimal_mesh()
    data["models"] = {"small": {"model": "m", "script": "absent.yaml"}}
    path = tmp_path / "mesh.yaml"
    path.write_text(_yaml(data))
    line = next(
        n
        for n, text in enumerate(path.read_text().splitlines(), 1)
        if "script: absent.yaml" in text
    )
    with pytest.raises(SpecError) as caught:
        load_mesh(path)
    assert (
        f"{path}:{line}: models.small.script: no such model script: "
        f"{tmp_path / 'absent.yaml'}" in str(caught.value)
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such mesh spec"):
        load_mesh(tmp_path / "absent.yaml")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("name: broken\nagents: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML") as caught:
        load_mesh(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3:1: not valid YAML")
    assert "<unicode string>" not in message


def test_empty_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("")
    with pytest.raises(SpecError, match="invalid mesh spec"):
        load_mesh(path)


def _yaml(data: Mesh) -> str:
    return yaml.safe_dump(data, sort_keys=False)
