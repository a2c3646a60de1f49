"""Agent kinds: which behaviour runs an agent of each ``kind:`` of the mesh spec.

The agent loop knows only this registry. ``model`` and ``python`` are registered here; the
router and the supervisor register themselves when their packages are imported
(``choreo.router``, ``choreo.supervisor``), so the loop never imports the services built on
top of it (docs/ARCHITECTURE.md, "Layers"). ``choreo.local.services`` imports every kind this
distribution ships.
"""

from __future__ import annotations

from collections.abc import Callable

from choreo.agent.behaviour import Behaviour, ModelAgent
from choreo.spec.mesh import AgentSpec, MeshSpec, ToolSpec

#: Builds the behaviour of one agent of a mesh.
BehaviourFactory = Callable[[MeshSpec, AgentSpec], Behaviour]

_KINDS: dict[str, BehaviourFactory] = {}


def register(kind: str, factory: BehaviourFactory) -> None:
    """Run agents of ``kind`` with the behaviours ``factory`` builds (the last one wins)."""
    _KINDS[kind] = factory


def behaviour_for(spec: MeshSpec, agent: AgentSpec) -> Behaviour:
    """The behaviour ``agent``'s kind calls for; see docs/ORCHESTRATION.md.

    Raises:
        LookupError: no behaviour is registered for the agent's kind (its package was never
            imported).
    """
    factory = _KINDS.get(agent.kind)
    if factory is None:
        raise LookupError(
            f"agent {agent.name!r}: no behaviour registered for kind "
            f"{agent.kind!r} (import choreo.{agent.kind} first)"
        )
    return factory(spec, agent)


def _model(spec: MeshSpec, agent: AgentSpec) -> Behaviour:
    """A model agent; one with sandbox tools that run on its output is wrapped in them."""
    if any(isinstance(t, ToolSpec) and not t.call for t in agent.tools):
        from choreo.agent.sandboxed import ToolAgent

        return ToolAgent(agent, ModelAgent(spec, agent))
    return ModelAgent(spec, agent)


def _python(spec: MeshSpec, agent: AgentSpec) -> Behaviour:
    from choreo.agent.python import PythonAgent

    return PythonAgent(spec, agent)


register("model", _model)
register("python", _python)
