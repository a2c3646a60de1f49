"""Starting a whole mesh as OS processes: topics, scripted and local models, sandbox, keeper,
agents, watchdog."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from choreo.kafka.acl import service_topics
from choreo.kafka.security import security_of
from choreo.kafka.topics import ensure_topics
from choreo.local.processes import ProcessGroup, ServiceStartError
from choreo.model_server.llama import server_args, wait_healthy
from choreo.models.client import env_var
from choreo.observe.settings import Settings
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, ModelTier, ToolSpec

#: Where agents reach the sandbox service (see choreo.agent.sandboxed).
SANDBOX_URL = "CHOREO_SANDBOX_URL"

#: Seconds a llama.cpp server may take to load its model and announce its address.
LOCAL_MODEL_START_S = 120.0


def create_topics(
    spec: MeshSpec, bootstrap: str, settings: Settings, service: str | None = None
) -> list[str]:
    """Create the mesh's missing topics; return the names created.

    ``service`` (``keeper``, ``agent:<name>``): only the topics that service reads or
    writes, those its ACLs name (choreo.kafka.acl.service_topics). Under least privilege
    a service cannot see any other topic, and would take each for one still to create, which
    the broker refuses. Raises choreo.kafka.topics.TopicsRefused as ``ensure_topics`` does.
    """
    topics = Topics(settings.topic_prefix)
    only = None if service is None else service_topics(spec, topics, service)
    return asyncio.run(ensure_topics(bootstrap, topics, spec, security_of(settings), only))


def start_mesh(
    spec: MeshSpec,
    mesh_path: Path,
    bootstrap: str,
    settings: Settings,
    log_dir: Path,
    *,
    watchdog: bool = True,
    env: Mapping[str, str] | None = None,
) -> ProcessGroup:
    """Start every service of ``spec`` as its own process; return the running group.

    ``env`` is added to every child's environment (e.g. a topic prefix or tuning knobs). A
    fixed ``settings.metrics_port`` is the first of consecutive ports, one per service in
    start order (see ProcessGroup); 0 gives each a free port, as before.
    """
    create_topics(spec, bootstrap, settings)
    group = ProcessGroup(
        log_dir,
        env={**(env or {}), "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        metrics_base=settings.metrics_port,
    )
    try:
        for tier_name, tier in sorted(spec.models.items()):
            variable = env_var(tier_name, "BASE_URL")
            if os.environ.get(variable):
                continue
            if tier.script is not None:
                _, group.env[variable] = group.start_server(
                    f"model-{tier_name}", ["model-server", str(tier.script), "--port", "0"], 30.0
                )
            elif tier.server is not None:
                group.env[variable] = start_local_model(group, tier_name, tier)
        if uses_sandbox(spec) and not os.environ.get(SANDBOX_URL):
            _, group.env[SANDBOX_URL] = group.start_server(
                "sandbox", ["run", "sandbox", "--port", "0"], 60.0
            )
        mesh = ["--mesh", str(mesh_path)]
        group.start_choreo("keeper", ["run", "keeper", *mesh])
        for agent in spec.agents:
            for replica in range(1, agent.replicas + 1):
                group.start_choreo(
                    f"{agent.name}-{replica}", ["run", "agent", *mesh, "--agent", agent.name]
                )
        if watchdog:
            group.start_choreo("watchdog", ["run", "watchdog", *mesh])
    except BaseException:
        group.stop()
        raise
    return group


def start_local_model(group: ProcessGroup, tier_name: str, tier: ModelTier) -> str:
    """Start ``tier``'s llama.cpp server in ``group`` and return its base URL once it lists
    the tier's model. Loading a GGUF file takes seconds; the start-up allows two minutes."""
    assert tier.server is not None
    child, url = group.start_server(
        f"model-{tier_name}", server_args(tier.model, tier.server), LOCAL_MODEL_START_S
    )
    try:
        wait_healthy(url, tier.model)
    except RuntimeError as exc:
        raise ServiceStartError(f"{exc}; see {child.log_path}") from None
    return url


def uses_sandbox(spec: MeshSpec) -> bool:
    """True when an agent runs the sandbox tool: the mesh then needs a sandbox service."""
    return any(isinstance(tool, ToolSpec) for agent in spec.agents for tool in agent.tools)
