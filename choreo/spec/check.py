"""Name resolution of a mesh spec: every name it uses must name something it declares.

The pydantic models check each part of a spec on its own (types, ranges, patterns); this module
checks that the parts fit together: the state fields agents read, write, finish with and hand
to tools; the event types routes emit and agents subscribe to; the model tiers agents use; the
stages of a supervisor's plan. Each check yields :class:`Problem`\\ s, each with the path of the
mistake in the spec's data (``("agents", 1, "routes", 0, "emit")``), so the loader reports
every error once, at the line where it was made (see ``yamlfile.describe``).

A check is a function ``MeshSpec -> Iterable[Problem]`` listed in :data:`CHECKS`; a new kind of
agent or a new spec field adds its own function there.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from choreo.spec.mesh import AgentSpec, MeshSpec

#: The tier name an agent gives to let the mesh's ``routing`` pick its tier per step.
AUTO_TIER = "auto"

#: Fields every trace has without declaring them: the task's input and metadata, and the
#: guidance an operator adds when resuming an escalation.
BUILTIN_FIELDS = frozenset({"input", "metadata", "guidance"})

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is in the spec's data, and what is wrong, in words."""

    loc: Loc
    message: str


class SpecProblems(ValueError):
    """Every name-resolution problem of a spec, raised together from the model validator.

    Never reaches a user, so no ``ChoreoError``: pydantic takes it (it must be a
    ``ValueError``) into its validation error, which ``choreo.spec.mesh.parse_mesh`` reports
    as one ``SpecError``.
    """

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}" for p in problems))
        self.problems = problems


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``name``, else the known names."""
    choices = sorted(set(known))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(choices)})" if choices else ""


# -- state fields --------------------------------------------------------------------------


def written_fields(spec: MeshSpec) -> set[str]:
    """Every field some part of the mesh writes: agents' and routes' writes, plans' own
    fields, joins' arrivals and summaries."""
    written: set[str] = set()
    for agent in spec.agents:
        written |= set(agent.writes)
        written |= {name for route in agent.routes for name in route.writes}
        if agent.plan is not None:
            written.add(agent.plan.state)
            if agent.plan.arrivals:
                written.add(agent.plan.arrivals)
        if agent.context is not None:
            written |= {agent.context.summary_field, agent.context.cursor_field}
    return written | {join.field for join in spec.joins}


def known_fields(spec: MeshSpec) -> set[str]:
    """Every field a step may read: declared, built in, or written by the mesh."""
    return set(spec.state) | BUILTIN_FIELDS | written_fields(spec)


def _field_uses(agent: AgentSpec) -> Iterator[tuple[Loc, str]]:
    """Each place ``agent`` names a field it reads, with the field (path relative to it)."""
    for k, name in enumerate(agent.reads or ()):
        yield ("reads", k), name
    for j, route in enumerate(agent.routes):
        if route.output is not None:
            yield ("routes", j, "output"), route.output
    for t, tool in enumerate(agent.tools):
        for file_name, name in getattr(tool, "files", {}).items():  # the sandbox's files
            yield ("tools", t, "files", file_name), name
    if agent.context is not None:
        for k, name in enumerate(agent.context.history):
            yield ("context", "history", k), name
    if agent.plan is not None:
        yield ("plan", "output"), agent.plan.output
        for s, stage in enumerate(agent.plan.stages):
            yield ("plan", "stages", s, "result"), stage.result
            if stage.feedback is not None:
                yield ("plan", "stages", s, "feedback"), stage.feedback


def _field_writes(agent: AgentSpec) -> Iterator[tuple[Loc, str]]:
    for name in agent.writes:
        yield ("writes", name), name
    for j, route in enumerate(agent.routes):
        for name in route.writes:
            yield ("routes", j, "writes", name), name


def check_fields(spec: MeshSpec) -> Iterator[Problem]:
    """Reads, outputs, tool files and history name known fields; when the spec declares its
    state, writes name declared fields (a write to a typo would make a new, unread field)."""
    known = known_fields(spec)
    declared = set(spec.state) | BUILTIN_FIELDS
    for i, agent in enumerate(spec.agents):
        for loc, name in _field_uses(agent):
            if name not in known:
                yield Problem(
                    ("agents", i, *loc),
                    f"no state field {name!r}: not declared in "
                    f"state nor written by any agent{suggest(name, known)}; a field "
                    "a task brings in its initial_state is declared in state",
                )
        if not spec.state:
            continue
        for loc, name in _field_writes(agent):
            if name not in declared:
                yield Problem(
                    ("agents", i, *loc),
                    f"state field {name!r} is not declared in state{suggest(name, spec.state)}",
                )


# -- event types ---------------------------------------------------------------------------


def _emits(spec: MeshSpec) -> Iterator[tuple[Loc, str]]:
    """Each place an event type is emitted: routes, plans' assignments, joins."""
    for i, agent in enumerate(spec.agents):
        for j, route in enumerate(agent.routes):
            if route.emit is not None:
                yield ("agents", i, "routes", j, "emit"), route.emit
        if agent.plan is not None:
            for s, stage in enumerate(agent.plan.stages):
                yield ("agents", i, "plan", "stages", s, "assign"), stage.assign
    for k, join in enumerate(spec.joins):
        yield ("joins", k, "emit"), join.emit


def check_events(spec: MeshSpec) -> Iterator[Problem]:
    """Every emitted type has a subscriber (or a join), every subscribed type an emitter.

    A misspelled type shows on both ends; it is reported once, at the emitter, naming the
    closest subscribed type (or all of them), and the subscriber's side is left quiet until
    every emitted type is heard.
    """
    subscribed = {t for agent in spec.agents for t in agent.subscribe}
    joined = {join.wait_for for join in spec.joins}
    routed = {t for agent in spec.agents for t in agent.emits}
    emitted = set(spec.entry) | routed | {join.emit for join in spec.joins}
    unheard: list[str] = []
    for loc, event_type in _emits(spec):
        listeners = subscribed if loc[0] == "joins" or loc[2] == "plan" else subscribed | joined
        if event_type not in listeners:
            unheard.append(event_type)
            yield Problem(
                loc,
                f"no agent{'' if loc[0] == 'joins' else ' nor join'} subscribes "
                f"to {event_type!r}{suggest(event_type, listeners)}",
            )
    for k, join in enumerate(spec.joins):
        if join.wait_for not in routed:
            yield Problem(
                ("joins", k, "wait_for"),
                f"no route emits {join.wait_for!r}{suggest(join.wait_for, routed)}",
            )
    for i, agent in enumerate(spec.agents):
        for k, event_type in enumerate(agent.subscribe):
            if event_type not in emitted and not unheard:
                yield Problem(
                    ("agents", i, "subscribe", k),
                    f"nothing emits {event_type!r} (not in entry nor in any route's "
                    f"emit){suggest(event_type, emitted)}",
                )
        if agent.plan is not None:
            for s, stage in enumerate(agent.plan.stages):
                if stage.returns not in agent.subscribe:
                    yield Problem(
                        ("agents", i, "plan", "stages", s, "returns"),
                        f"the supervisor must subscribe to {stage.returns!r}",
                    )
    for k, event_type in enumerate(spec.entry):
        if event_type not in subscribed:
            yield Problem(
                ("entry", k),
                f"no agent subscribes to {event_type!r}{suggest(event_type, subscribed)}",
            )


# -- names of agents, joins and model tiers ------------------------------------------------


def check_names(spec: MeshSpec) -> Iterator[Problem]:
    """Agent and join names are unique."""
    names: dict[str, list[str]] = {
        "agents": [a.name for a in spec.agents],
        "joins": [j.name for j in spec.joins],
    }
    for section, listed in names.items():
        for i, name in enumerate(listed):
            if name in listed[:i]:
                yield Problem((section, i, "name"), f"duplicate {section[:-1]} name {name!r}")


def check_tiers(spec: MeshSpec) -> Iterator[Problem]:
    """Agents, summaries and the routing name declared tiers; ``auto`` has a routing."""

    def unknown(name: str) -> str:
        return f"unknown model tier {name!r}{suggest(name, spec.models)}"

    if spec.routing is not None:
        for role in ("cheap", "premium"):
            if getattr(spec.routing, role) not in spec.models:
                yield Problem(("routing", role), unknown(getattr(spec.routing, role)))
    for i, agent in enumerate(spec.agents):
        if agent.model == AUTO_TIER:
            if spec.routing is None:
                yield Problem(
                    ("agents", i, "model"),
                    "'auto' needs a routing section naming the cheap and premium tiers",
                )
            if agent.kind != "model":
                yield Problem(("agents", i, "model"), "only a model agent may use 'auto'")
        elif agent.model and agent.model not in spec.models:  # a python agent may have none
            yield Problem(("agents", i, "model"), unknown(agent.model))
        tier = agent.context.tier if agent.context else None
        if tier is not None and tier not in spec.models:
            yield Problem(("agents", i, "context", "tier"), unknown(tier))


#: Every name check, in the order their problems are listed for one line.
CHECKS: list[Callable[[MeshSpec], Iterable[Problem]]] = [
    check_names,
    check_tiers,
    check_events,
    check_fields,
]


def problems(spec: MeshSpec) -> list[Problem]:
    """Every name-resolution problem of ``spec`` (empty when every name resolves)."""
    return [problem for check in CHECKS for problem in check(spec)]
