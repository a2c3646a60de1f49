"""``choreo up``'s start of a tier served by llama.cpp: the server is a process of the mesh's
group, answers at the address it announced before any agent starts, and stops with the group.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ProcessMesh
from tests.real_model.conftest import real_model_broker  # noqa: F401  (the skip rules)

pytestmark = pytest.mark.real_model

MESH = Path(__file__).parents[1] / "real_model" / "clerk.yaml"


def test_up_starts_the_tiers_llama_server_first_and_stops_it_with_the_mesh(
    real_model_broker: object,  # noqa: F811
    start_test_mesh_processes: Callable[..., ProcessMesh],
) -> None:
    mesh = start_test_mesh_processes(MESH)
    server = mesh.group.find("model-local")
    url = mesh.model_url("local")
    listed = httpx.get(f"{url}/models", timeout=30).json()
    assert [entry["id"] for entry in listed["data"]] == ["smollm2-135m-instruct"]
    clerk = mesh.group.find("clerk-1")
    assert server.started_at < clerk.started_at
    pid = server.pid
    assert pid is not None
    mesh.stop()
    assert server.status == "stopped"
    assert not Path(f"/proc/{pid}").exists()  # waited for, not left behind
