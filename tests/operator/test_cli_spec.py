"""A spec's mistakes as the real ``choreo`` reports them: before anything starts, exit 2, each
at its ``file:line`` with the agent's name, printed verbatim (never read as markup), and no
traceback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLES
from tests.operator.support import choreo


def _writer_editor(folder: Path, *edits: tuple[str, str]) -> Path:
    """The writer-editor spec with ``edits`` (old, new) applied, beside its model script."""
    text = (EXAMPLES / "writer-editor" / "mesh.yaml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    (folder / "model.yaml").write_text((EXAMPLES / "writer-editor" / "model.yaml").read_text())
    path = folder / "mesh.yaml"
    path.write_text(text)
    return path


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_yaml_syntax_error_names_the_file_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "[b]mesh.yaml"  # a name rich would read as markup
    path.write_text("name: broken\nagents: [unclosed\n")
    for command in (("up", str(path)), ("submit", str(path), "x"), ("topics", "--mesh", str(path))):
        done = choreo(*command, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith(f"error: {path}:3:1: not valid YAML: "), done.stderr
        assert "<unicode string>" not in done.stderr and "Traceback" not in done.stderr


def test_a_missing_model_script_stops_up_before_anything_starts(tmp_path: Path) -> None:
    path = _writer_editor(tmp_path, ("script: model.yaml", "script: absent.yaml"))
    done = choreo("up", str(path), "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {path}: invalid mesh spec",
        f"  {path}:{_line_of(path, 'absent.yaml')}: models.scripted.script: no such model "
        f"script: {tmp_path / 'absent.yaml'}",
    ]
    assert not (tmp_path / "logs").exists()  # no service was started


def test_a_misspelled_field_is_reported_at_its_line_with_the_agent(tmp_path: Path) -> None:
    path = _writer_editor(tmp_path, ("output: draft\n", "output: drafts\n"))
    done = choreo("up", str(path), "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: {path}: invalid mesh spec" and len(lines) == 2, lines
    assert lines[1].startswith(
        f"  {path}:{_line_of(path, 'output: drafts')}: "
        "agents[editor].routes[#1].output: no state field 'drafts'"
    )
    assert "(did you mean 'draft'?)" in lines[1]
