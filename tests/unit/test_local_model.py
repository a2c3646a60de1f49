"""A tier served by llama.cpp (choreo.spec.localmodel): its defaults, its spec check, and the
command ``choreo up`` starts for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from choreo.cli.main import build_parser
from choreo.model_server.llama import server_args
from choreo.spec.errors import SpecError
from choreo.spec.localmodel import INSTALL_HINT, LocalServer
from choreo.spec.mesh import ModelTier, load_mesh


def _tier(**fields: Any) -> ModelTier:
    return ModelTier.model_validate({"model": "smollm2", "server": {}, **fields})


def test_a_served_tier_asks_for_routes_and_tool_calls_as_json_one_call_per_server_slot() -> None:
    tier = _tier()
    assert tier.concurrency == 1
    assert (tier.structured_output, tier.tool_calls) == ("json_object", "prompted")
    plain = _tier(structured_output=None)
    assert (plain.structured_output, plain.tool_calls) == (None, "native")
    with pytest.raises(ValueError, match="set structured_output"):
        _tier(structured_output=None, tool_calls="prompted")


def test_a_served_tier_cannot_send_more_calls_than_the_server_takes() -> None:
    with pytest.raises(ValueError, match="more than the server's 1 slot"):
        _tier(concurrency=4)


def test_without_the_local_model_extra_the_spec_says_in_one_line_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "name: m\nentry: [x]\nmodels:\n  local: {model: smollm2, server: {}}\nagents:\n"
        "  - {name: a, subscribe: [x], persona: p, model: local,"
        " routes: [{finish: true, output: input}]}\n"
    )
    with pytest.raises(SpecError) as error:
        load_mesh(mesh)
    problem = [line for line in str(error.value).splitlines() if INSTALL_HINT in line]
    assert problem == [
        f"  {mesh}:4: models.local.server: serving this tier with llama.cpp needs the "
        f"local-model extra: {INSTALL_HINT}"
    ]


def test_a_gguf_file_resolves_against_the_mesh_folder_and_must_exist(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the local-model extra is not installed")
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "name: m\nentry: [x]\nmodels:\n  local: {model: m, server: {gguf: m.gguf}}\nagents:\n"
        "  - {name: a, subscribe: [x], persona: p, model: local,"
        " routes: [{finish: true, output: input}]}\n"
    )
    with pytest.raises(SpecError, match="no such GGUF file"):
        load_mesh(mesh)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert load_mesh(mesh).models["local"].server.gguf == (tmp_path / "m.gguf")  # type: ignore[union-attr]


def test_the_server_command_up_starts_carries_every_field_of_the_tiers_server(
    tmp_path: Path,
) -> None:
    server = LocalServer(gguf=tmp_path / "m.gguf", threads=3, context=2048, chat_format="chatml")
    args = build_parser().parse_args(server_args("tiny", server))
    parsed = LocalServer(
        gguf=args.gguf, threads=args.threads, context=args.context, chat_format=args.chat_format
    )
    assert (args.model, args.port, parsed) == ("tiny", 0, server)
