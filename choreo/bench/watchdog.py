"""``choreo bench watchdog``: how many steps a loop still gets once the watchdog could see it.

Runs the scenario mesh (tests/scenarios/mesh.yaml) with its watchdog on a real broker, one
task per scenario, and reads back from the log what happened: the hop at which the rules first
had evidence (a loop rule matched, or a budget went over), and how many steps the mesh still
ran after that hop before each verdict was sent and before the trace ended. Those steps are
the cost of watching from outside the agents: the hop records travel to the watchdog and the
verdict travels back while the agents keep working.

The scenario catalogue (choreo.bench.scenarios) and the read-back helpers, over
choreo.client.Client, are shared with tests/scenarios.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aiokafka import TopicPartition

from choreo.bench.corpus import Outcome
from choreo.bench.scenarios import HEALTHY, SCENARIO_MESH, SCENARIOS
from choreo.client import Client, ResultTimeout
from choreo.kafka.security import make_admin
from choreo.local.launch import start_mesh
from choreo.observe.settings import Settings
from choreo.schemas import ControlVerdict, Escalation, HopRecord, TerminalResult
from choreo.schemas.ids import new_id
from choreo.spec.mesh import load_mesh
from choreo.spec.watchdog import app_id


@dataclass(frozen=True)
class Observation:
    """Everything the log says about one trace, in log order."""

    trace_id: str
    verdicts: list[ControlVerdict]
    escalations: list[Escalation]
    hops: list[HopRecord]
    results: list[TerminalResult]


async def observe(client: Client, trace_id: str) -> Observation:
    """Read one trace back. A verdict or escalation re-sent with the same id (at-least-once
    delivery; the keeper drops the repeat by that id) is counted once."""
    trace = await client.trace(trace_id)
    return Observation(
        trace_id,
        list({v.verdict_id: v for v in trace.verdicts}.values()),
        list({(e.escalation_id, e.status): e for e in trace.escalations}.values()),
        trace.hops,
        trace.results,
    )


async def caught_up(client: Client, trace_id: str) -> bool:
    """True once the watchdog's group has committed past every hop record of the trace:
    whatever it had to say about the trace is then on the control topic."""
    topics = client.topics
    records = await client.records(topics.hops, trace_id)
    if not records:
        return False
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    admin = make_admin(client.bootstrap, client.security)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            app_id(topics.prefix),
            partitions=[TopicPartition(topics.hops, p) for p in sorted(ends)],
        )
    finally:
        await admin.close()
    done = {tp.partition: meta.offset for tp, meta in committed.items()}
    return all(done.get(p, -1) >= end for p, end in ends.items())


@dataclass(frozen=True)
class Row:
    """One scenario's figures; ``None`` where a verdict did not happen."""

    scenario: str
    status: str
    actions: tuple[str, ...]
    rule: str | None
    evidence_hop: int | None
    before_shift: int | None
    before_halt: int | None
    before_end: int | None
    hops: int


def steps_before(hops: list[HopRecord], evidence_hop: int, verdict: ControlVerdict) -> int:
    """Steps folded after the evidence hop and no later than the verdict was sent."""
    return sum(1 for h in hops if h.hop > evidence_hop and h.created_at <= verdict.created_at)


def evidence_hop(verdict: ControlVerdict, hops: list[HopRecord]) -> int | None:
    """The hop whose record first showed what the verdict is about.

    A loop verdict names it. A budget halt names it when a hop record tripped it; when the
    trace's snapshot did (read after its hops), it is the first hop whose totals went over.
    """
    if "hop" in verdict.evidence:
        return int(verdict.evidence["hop"])
    limits = verdict.evidence.get("details", {})
    used = {
        "hops": lambda h: h.totals.hops,
        "cost": lambda h: h.totals.cost,
        "tokens": lambda h: h.totals.tokens_in + h.totals.tokens_out,
    }
    over = [
        h.hop
        for h in hops
        for name, figures in limits.items()
        if name in used and used[name](h) > figures["limit"]
    ]
    return min(over, default=None)


def measure(name: str, seen: Observation) -> Row:
    """The figures of one finished scenario trace."""
    first = seen.verdicts[0] if seen.verdicts else None
    evidence = evidence_hop(first, seen.hops) if first is not None else None
    last_hop = max((h.hop for h in seen.hops), default=0)

    def before(action: str) -> int | None:
        verdict = next((v for v in seen.verdicts if v.action == action), None)
        if verdict is None or evidence is None:
            return None
        return steps_before(seen.hops, evidence, verdict)

    return Row(
        scenario=name,
        status=seen.results[0].status if seen.results else "running",
        actions=tuple(v.action for v in seen.verdicts),
        rule=first.reason if first is not None else None,
        evidence_hop=evidence,
        before_shift=before("persona_shift"),
        before_halt=before("halt"),
        before_end=last_hop - evidence if evidence is not None else None,
        hops=len(seen.hops),
    )


async def _poll(check: Callable[[], Awaitable[bool]], what: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)  # polling the log for a condition, with a deadline


async def _measure_all(client: Client, within_s: float) -> list[Row]:
    healthy = await client.submit(HEALTHY)
    await _poll(partial(caught_up, client, healthy), "the watchdog to start", within_s)
    traces = {s.name: await client.submit(s.input, budget=s.budget) for s in SCENARIOS}
    rows = []
    for name, trace_id in traces.items():
        try:
            result = await client.wait(trace_id, within_s)
        except ResultTimeout:
            raise TimeoutError(
                f"scenario {name}: no terminal record within {within_s:.0f}s"
            ) from None
        if result.status == "failed":  # no scenario fails: the mesh itself is broken
            raise RuntimeError(f"scenario {name} failed: {result.reason}")
        await _poll(
            partial(caught_up, client, trace_id),
            f"the watchdog to read scenario {name}",
            within_s,
        )
        rows.append(measure(name, await observe(client, trace_id)))
    return rows


async def _measure_on(bootstrap: str, settings: Settings, within_s: float) -> list[Row]:
    async with Client(bootstrap, settings=settings) as client:
        return await _measure_all(client, within_s)


def run(
    bootstrap: str, log_dir: Path, mesh: Path = SCENARIO_MESH, timeout: float = 180.0
) -> list[Row]:
    """Start the scenario mesh with its watchdog under a fresh prefix, run every scenario."""
    prefix = f"bench{new_id()[:8].lower()}"
    settings = Settings(topic_prefix=prefix)
    spec = load_mesh(mesh)
    with start_mesh(
        spec, mesh, bootstrap, settings, log_dir, watchdog=True, env={"CHOREO_TOPIC_PREFIX": prefix}
    ):
        return asyncio.run(_measure_on(bootstrap, settings, timeout))


def report(rows: list[Row], command: str, broker_kind: str) -> str:
    """The BENCHMARKS.md section: one row per scenario, and how to read it."""

    def cell(value: int | None) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"`{command}` — the scenario mesh (tests/scenarios/mesh.yaml) with its watchdog, "
        f"{broker_kind} broker, scripted models (200 ms per call; the fixer's 2.5 s).",
        "",
        "*Evidence hop*: the hop whose record first matched a rule. The next columns count "
        "the steps folded after that hop and no later than the persona shift was sent, than "
        "the halt was sent, and until the trace ended (the verdict's way back through the "
        "keeper, and steps already in flight, included).",
        "",
        "| scenario | verdicts | first reason | evidence hop | steps → shift | steps → halt "
        "| steps → end | hops | terminal |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {', '.join(r.actions) or 'none'} | {r.rule or '-'} "
            f"| {cell(r.evidence_hop)} | {cell(r.before_shift)} | {cell(r.before_halt)} "
            f"| {cell(r.before_end)} | {r.hops} | {r.status} |"
        )
    return "\n".join(lines)


# -- the labelled corpus (choreo/bench/corpus.py) -------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The corpus's figures against its targets (every loop caught, nothing else)."""

    loops: int
    caught: int
    healthy: int
    false_halts: int
    false_shifts: int
    worst_steps: int | None
    overspend: dict[str, float]
    wrong_escalations: int
    notes: int

    @property
    def on_target(self) -> bool:
        return (
            self.caught == self.loops
            and self.false_halts == self.false_shifts == 0
            and not any(self.overspend.values())
            and self.wrong_escalations == 0
            and self.notes == 0
            and (self.worst_steps or 0) <= 2
        )


def calibration(outcomes: list[Outcome]) -> Calibration:
    """Sum one corpus run up."""
    loops = [o for o in outcomes if o.case.label == "loop"]
    steps = [o.steps_to_verdict for o in outcomes if o.steps_to_verdict is not None]
    return Calibration(
        loops=len(loops),
        caught=sum(o.caught for o in loops),
        healthy=len(outcomes) - len(loops),
        false_halts=sum(o.false_halt for o in outcomes),
        false_shifts=sum(o.false_shift for o in outcomes),
        worst_steps=max(steps, default=None),
        overspend={
            name: round(sum(o.overspend[name] for o in outcomes), 12)
            for name in ("hops", "tokens", "cost")
        },
        wrong_escalations=sum(not o.escalations_right for o in outcomes),
        notes=sum(len(o.notes) for o in outcomes),
    )


def corpus_report(outcomes: list[Outcome], command: str) -> str:
    """The BENCHMARKS.md section of a corpus run: the totals, then one row per case."""
    total = calibration(outcomes)

    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"`{command}`: {len(outcomes)} labelled scenario meshes "
        f"(choreo/bench/watchdog_corpus/), each run to its end through the keeper's "
        "transitions, the agents' budget guard with real HTTP calls to scripted model "
        "servers, and the watchdog's policy, in one process (choreo/bench/corpus.py).",
        "",
        f"- loops caught (halted, fixed by a shift, or stopped by a budget as labelled): "
        f"**{total.caught} of {total.loops}**",
        f"- false halts: **{total.false_halts}** of {total.healthy} healthy flows; "
        f"false persona shifts: **{total.false_shifts}**",
        f"- steps from the evidence to the first verdict (deepest hop folded meanwhile): "
        f"at most **{cell(total.worst_steps)}**",
        "- overspend, summed over every case (spent over the admitted limit): "
        f"hops **{total.overspend['hops']}**, tokens **{total.overspend['tokens']}**, "
        f"cost **${total.overspend['cost']}**",
        f"- halted traces without exactly one escalation: **{total.wrong_escalations}**; "
        f"other anomalies (terminal records, hop counts): **{total.notes}**",
        "",
        "*Steps → verdict*: hops (along one chain) the trace went past the evidence hop before "
        "the keeper applied the first verdict, then all steps folded meanwhile. *Overspend*: "
        "hops / tokens / dollars over the limit.",
        "",
        "| case | label | shape | terminal | verdicts | steps → verdict | overspend | judged |",
        "| --- | --- | --- | --- | --- | ---: | --- | --- |",
    ]
    for o in outcomes:
        verdicts = ", ".join(f"{v.action} {v.reason}" for v in o.verdicts) or "none"
        steps = (
            "-" if o.steps_to_verdict is None else f"{o.steps_to_verdict} / {o.folded_to_verdict}"
        )
        spent = " / ".join(cell(o.overspend[k]) for k in ("hops", "tokens", "cost"))
        if o.case.label == "loop":
            judged = "caught" if o.caught else "MISSED"
        else:
            judged = "false halt" if o.false_halt else "false shift" if o.false_shift else "ok"
        terminal = o.status if o.continuation is None else f"{o.status}; resumed: {o.continuation}"
        lines.append(
            f"| {o.case.name} | {o.case.label} | {o.case.shape} | {terminal} "
            f"| {verdicts} | {steps} | {spent} | {judged} |"
        )
    return "\n".join(lines)
