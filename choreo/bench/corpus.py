"""The watchdog's calibration corpus: labelled scenario meshes, each run to its end.

A case (one YAML file in ``choreo/bench/watchdog_corpus/``) is a whole mesh with scripted
models, one task, and a label: ``loop`` (with the hop where the loop starts and what should stop
it) or ``healthy``. :func:`run_case` runs it with the mesh's real parts in one process: the
keeper's transitions (``Keeper.apply``/``control``/``intake``), the agents' behaviours and
budget guard (``run_step``, so every model call goes over real HTTP to a scripted model server
and is capped by the keeper's allowance), and the watchdog's policy (``Watchdog.on_hop`` and
``on_snapshot``). Records pass between them through one first-in-first-out queue in the order
the keeper sends them, so a verdict reaches the keeper after the steps already in flight, as on
a broker. What is measured is what the rules and budgets decide, deterministically; the delay
a broker adds is measured by ``choreo bench watchdog --live`` on the scenario mesh.

Judgement of one case (:class:`Outcome`):

- a loop is *caught* when a loop verdict stopped or fixed it (``catch: loop``), or a budget
  halted it (``catch: budget``), or either (``catch: any``), or it simply ended within every
  budget (``catch: held``: a blow-out the call's cap absorbs); never with anything overspent;
- a healthy case must complete with no verdict: a halt is a *false halt*, a persona shift a
  *false shift*;
- *steps to verdict*: how much deeper (in ``hop``, steps along one chain) the trace went after
  the hop whose record gave the evidence, before the keeper applied the first verdict; and
  how many steps it folded meanwhile in all (more under fan-out, where branches run at once);
- *overspend* per budget: how far the terminal totals went past the admitted limit (0 is
  the target, exactly).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field

from choreo.agent.behaviour import Behaviour
from choreo.agent.kinds import behaviour_for
from choreo.agent.service import run_step
from choreo.keeper.batch import Batch
from choreo.keeper.fold import carried_over
from choreo.keeper.machine import Keeper
from choreo.local import services  # noqa: F401  (every agent kind registered)
from choreo.model_server.script import parse_script
from choreo.model_server.server import ScriptedServer
from choreo.schemas import (
    Budget,
    ControlVerdict,
    Envelope,
    Escalation,
    HopRecord,
    Snapshot,
    Task,
    TerminalResult,
    decode,
    encode,
)
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec
from choreo.watchdog.app import default_budget
from choreo.watchdog.detectors import TraceWatch
from choreo.watchdog.policy import SnapshotHead, Watchdog

CORPUS = Path(__file__).resolve().parent / "watchdog_corpus"
TOPICS = Topics("corpus")
#: Records handled per case at most: a case that never ends is reported, not waited for.
MAX_RECORDS = 5000


class Case(BaseModel):
    """One labelled scenario: a mesh, its scripted models, a task, what should happen."""

    model_config = ConfigDict(extra="forbid")

    name: str
    label: Literal["loop", "healthy"]
    shape: str = Field(description="the kind of flow, e.g. flip-with-counter, checklist")
    about: str
    task: dict[str, Any]
    watchdog: bool = True
    catch: Literal["loop", "budget", "any", "held"] = "loop"
    loop_from: int | None = Field(None, description="first hop of the repeating pattern")
    resume: str | None = Field(None, description="guidance to resume the halted trace with")
    mesh: dict[str, Any]
    scripts: dict[str, dict[str, Any]]


@dataclass
class Outcome:
    """What happened to one case, and the judgement."""

    case: Case
    status: str
    reason: str | None
    verdicts: list[ControlVerdict]
    escalations: list[Escalation]
    hops: int
    overspend: dict[str, float]
    steps_to_verdict: int | None
    folded_to_verdict: int | None
    continuation: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shifted(self) -> bool:
        return any(v.action == "persona_shift" for v in self.verdicts)

    @property
    def caught(self) -> bool:
        """A loop stopped by what its label says should stop it, with nothing overspent."""
        if self.case.label != "loop" or any(self.overspend.values()):
            return False
        by_loop = any(v.reason.startswith("loop.") for v in self.verdicts) and (
            self.status == "halted" or (self.status == "completed" and self.shifted)
        )
        by_budget = self.status == "halted" and "budget" in (self.reason or "")
        held = self.status in ("halted", "completed")  # ended, within every budget
        return {"loop": by_loop, "budget": by_budget, "any": by_loop or by_budget, "held": held}[
            self.case.catch
        ] and self.continuation in (None, "completed")

    @property
    def false_halt(self) -> bool:
        return self.case.label == "healthy" and self.status != "completed"

    @property
    def false_shift(self) -> bool:
        return self.case.label == "healthy" and self.shifted

    @property
    def escalations_right(self) -> bool:
        """Exactly one escalation for a halted trace, none for any other."""
        return len(self.escalations) == (1 if self.status == "halted" else 0)


def load_cases(folder: Path = CORPUS) -> list[Case]:
    """Every case of the corpus, by file name."""
    return [
        Case.model_validate(yaml.safe_load(path.read_text()))
        for path in sorted(folder.glob("*.yaml"))
    ]


@contextmanager
def scripted_models(scripts: dict[str, dict[str, Any]]) -> Iterator[dict[str, str]]:
    """One scripted model server per script, on loopback in this process; yields base URLs."""
    servers = {}
    try:
        for name, data in scripts.items():
            server = ScriptedServer(("127.0.0.1", 0), parse_script(data, name))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
        yield {name: f"http://127.0.0.1:{s.server_address[1]}/v1" for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


class Run:
    """One mesh in one process: the keeper, the agents, the watchdog, and the queue between."""

    def __init__(self, spec: MeshSpec, watchdog: bool) -> None:
        self.spec = spec
        self.keeper = Keeper(spec, TOPICS)
        self.behaviours: dict[str, Behaviour] = {
            a.name: behaviour_for(spec, a) for a in spec.agents
        }
        self.dog = Watchdog(spec.watchdog, default_budget(spec)) if watchdog else None
        self.watches: dict[str, TraceWatch] = {}
        self.queue: deque[tuple[str, bytes]] = deque()
        self.offsets = itertools.count()
        # the log's timestamps: from now, a millisecond a record (deadlines stay meaningful)
        self.clock = itertools.count(int(time.time() * 1000))
        self.log: list[tuple[str, bytes]] = []
        #: per trace, the deepest step (``hop``) folded so far
        self.depth: dict[str, int] = {}
        #: verdict id -> (steps folded, deepest hop) when the evidence was seen / applied
        self.evidence_at: dict[str, tuple[int, int]] = {}
        self.applied_at: dict[str, tuple[int, int]] = {}

    async def drive(self, task: Task) -> None:
        """Submit ``task`` and pass records until nothing is left (or MAX_RECORDS)."""
        self._keeper(self.keeper.intake, TOPICS.tasks, encode(task))
        for _ in range(MAX_RECORDS):
            if not self.queue:
                return
            topic, value = self.queue.popleft()
            self.log.append((topic, value))
            await self._deliver(topic, value)

    async def _deliver(self, topic: str, value: bytes) -> None:
        if topic == TOPICS.outbox:
            step = decode(value, Envelope)
            before = self.keeper.traces.get(step.trace_id)
            self._keeper(self.keeper.apply, topic, value)
            if before is None or before.status != "running":
                return
            verdict_id = step.payload.get("verdict_id")
            if isinstance(verdict_id, str):
                self.applied_at.setdefault(
                    verdict_id, (before.totals.hops, self.depth.get(step.trace_id, 0))
                )
            else:
                self.depth[step.trace_id] = max(self.depth.get(step.trace_id, 0), step.hop)
        elif topic == TOPICS.control:
            self._keeper(self.keeper.control, topic, value)
        elif topic == TOPICS.hops and self.dog is not None:
            hop = decode(value, HopRecord)
            answers = self.dog.on_hop(self._watch(hop.trace_id), hop, hop.created_at)
            for verdict in answers:
                self.evidence_at.setdefault(verdict.verdict_id, (hop.totals.hops, hop.hop))
                self.queue.append((TOPICS.control, encode(verdict)))
        elif topic == TOPICS.state and self.dog is not None:
            head = msgspec.json.decode(value, type=SnapshotHead)
            at = head.updated_at or datetime.now(UTC)
            for verdict in self.dog.on_snapshot(self._watch(head.trace_id), head, at):
                self.evidence_at.setdefault(
                    verdict.verdict_id, (head.totals.hops, self.depth.get(head.trace_id, 0))
                )
                self.queue.append((TOPICS.control, encode(verdict)))
        elif topic.startswith(TOPICS.event("")):
            event = decode(value, Envelope)
            for agent in self.spec.agents:
                if event.type in agent.subscribe:
                    for out in await run_step(agent, self.behaviours[agent.name], event):
                        self.queue.append((TOPICS.outbox, encode(out)))

    def _watch(self, trace_id: str) -> TraceWatch:
        return self.watches.setdefault(trace_id, TraceWatch(trace_id=trace_id))

    def _keeper(self, handler: Any, topic: str, value: bytes) -> None:
        """Hand one record to the keeper as a consumer would; queue what it sends, snapshots
        last (the keeper's second phase)."""
        from aiokafka.structs import ConsumerRecord

        key = msgspec.json.decode(value).get("trace_id")
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic=topic,
            partition=0,
            offset=next(self.offsets),
            timestamp=next(self.clock),
            timestamp_type=0,
            key=key.encode() if isinstance(key, str) else None,
            value=value,
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=len(value),
            headers=(),
        )
        batch = Batch()
        handler(record, batch)
        self.queue.extend((t, v) for t, _, v, _ in batch.sends + batch.last)
        self.queue.extend(
            (TOPICS.state, value) for _, _, value in batch.state_records() if value is not None
        )
        self.keeper.settle(batch)

    def records(self, topic: str, kind: type[Any], trace_id: str) -> list[Any]:
        found = [decode(v, kind) for t, v in self.log if t == topic]
        return [r for r in found if r.trace_id == trace_id]

    async def aclose(self) -> None:
        for behaviour in self.behaviours.values():
            await behaviour.aclose()


def overspend(budget: Budget, result: TerminalResult) -> dict[str, float]:
    """How far the terminal totals went past each limit (0 when within it)."""
    usage = result.usage
    return {
        "hops": max(0, usage.hops - budget.max_hops) if budget.max_hops is not None else 0,
        "tokens": max(0, usage.tokens_in + usage.tokens_out - budget.max_tokens)
        if budget.max_tokens is not None
        else 0,
        "cost": round(max(0.0, usage.cost - budget.max_cost), 12)
        if budget.max_cost is not None
        else 0.0,
    }


async def run_case(case: Case) -> Outcome:
    """Run one case to its end; resume its halted trace once when the case says so."""
    with scripted_models(case.scripts) as urls:
        mesh = dict(case.mesh)
        mesh["models"] = {
            name: {**tier, "base_url": urls[tier.get("script", name)]}
            for name, tier in case.mesh["models"].items()
        }
        for tier in mesh["models"].values():
            tier.pop("script", None)
        spec = MeshSpec.model_validate(mesh)
        run = Run(spec, case.watchdog)
        try:
            task = msgspec.convert({**case.task, "trace_id": case.name}, Task)
            await run.drive(task)
            outcome = _judge(case, run, case.name)
            if case.resume is not None and outcome.status == "halted":
                outcome.continuation = await _resume(run, case.name, case.resume)
            return outcome
        finally:
            await run.aclose()


async def _resume(run: Run, trace_id: str, guidance: str) -> str:
    """Resume a halted trace the way ``choreo escalations resolve --resume`` does; return
    the continuation's terminal status."""
    halted = next(
        decode(v, Snapshot)
        for t, v in reversed(run.log)
        if t == TOPICS.state and decode(v, Snapshot).trace_id == trace_id
    )
    follow = f"{trace_id}-resumed"
    await run.drive(
        Task(
            input=str(halted.fields.get("input", "")),
            trace_id=follow,
            parent_trace_id=trace_id,
            initial_state={**carried_over(halted.fields), "guidance": guidance},
        )
    )
    results = run.records(TOPICS.results, TerminalResult, follow)
    return results[0].status if len(results) == 1 else f"{len(results)} terminal records"


def _judge(case: Case, run: Run, trace_id: str) -> Outcome:
    results = run.records(TOPICS.results, TerminalResult, trace_id)
    verdicts = list(
        {v.verdict_id: v for v in run.records(TOPICS.control, ControlVerdict, trace_id)}.values()
    )
    escalations = run.records(TOPICS.escalations, Escalation, trace_id)
    hops = run.records(TOPICS.hops, HopRecord, trace_id)
    notes = []
    if len(results) != 1:
        notes.append(f"{len(results)} terminal records")
    result = (
        results[0]
        if results
        else TerminalResult(trace_id=trace_id, status="halted", reason="never ended")
    )
    budget = run.keeper.traces[trace_id].budget if trace_id in run.keeper.traces else Budget()
    if result.usage.hops != sum(1 for h in hops if h.status != "refused"):
        notes.append("hop count differs from the steps folded")
    if "watchdog" in result.usage.by_agent:
        notes.append("a verdict was counted as a step")
    first = next((v for v in verdicts if v.verdict_id in run.applied_at), None)
    steps = folded = None
    if first is not None:
        (folded_at, deep_at), (folded_seen, deep_seen) = (
            run.applied_at[first.verdict_id],
            run.evidence_at[first.verdict_id],
        )
        steps, folded = deep_at - deep_seen, folded_at - folded_seen
    return Outcome(
        case=case,
        status=result.status,
        reason=result.reason,
        verdicts=verdicts,
        escalations=escalations,
        hops=len(hops),
        overspend=overspend(budget, result),
        steps_to_verdict=steps,
        folded_to_verdict=folded,
        notes=notes,
    )


def run_corpus(cases: list[Case] | None = None) -> list[Outcome]:
    """Every case of the corpus (or ``cases``), one after another."""

    async def main() -> list[Outcome]:
        return [await run_case(case) for case in cases or load_cases()]

    return asyncio.run(main())
