"""A persona shift as a keeper transition: logged on the outbox, kept in the snapshot, carried
by every later event of the trace, and honoured by the agent that it names."""

from __future__ import annotations

import msgspec

from choreo.agent.behaviour import system_prompt, temperature
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.keeper.replay import replay
from choreo.schemas import ControlVerdict, Envelope, decode
from choreo.schemas.records import PERSONA, Persona
from tests.state.support import TOPICS, Outbox, mesh, record, run, sent, step

SHIFT = ControlVerdict(
    verdict_id="v-shift",
    trace_id="t1",
    action="persona_shift",
    reason="loop.stuck",
    agent="alpha",
    temperature=0.9,
    system_prompt="Act as a debugger.",
    source="watchdog",
)


def logged(verdict: ControlVerdict) -> tuple[Batch, str | None]:
    batch = Batch()
    reason = Keeper(mesh(), TOPICS).control(
        record(TOPICS.control, verdict.trace_id, msgspec.json.encode(verdict), 0), batch
    )
    return batch, reason


def test_a_persona_verdict_becomes_one_outbox_record_with_a_stable_id() -> None:
    (first,) = logged(SHIFT)[0].sends
    (again,) = logged(SHIFT)[0].sends
    assert first[0] == TOPICS.outbox and first[1] == "t1"
    event = decode(first[2], Envelope)
    assert event.event_id == decode(again[2], Envelope).event_id  # a re-sent verdict: no news
    assert event.type == PERSONA
    assert event.payload["agent"] == "alpha"
    assert event.payload["persona"] == {
        "temperature": 0.9,
        "system_prompt": "Act as a debugger.",
        "reason": "loop.stuck",
    }


def test_a_persona_verdict_without_an_agent_is_dead_lettered() -> None:
    batch, reason = logged(msgspec.structs.replace(SHIFT, agent=None))
    assert reason is not None and "names no agent" in reason
    assert not batch.sends


def test_the_shift_is_kept_in_the_state_carried_forward_and_replayed_exactly() -> None:
    spec = mesh()
    outbox = Outbox()
    outbox.admit(spec, "t1")
    outbox.write(step("t1", "alpha", 0, 1, {"n": 1}, "wrap.requested"))
    batch, _ = logged(SHIFT)
    outbox.write(decode(batch.sends[0][2], Envelope))
    outbox.write(step("t1", "alpha", 1, 3, {"n": 1}, "wrap.requested"))
    keeper, out = run(spec, outbox.records)

    snapshot = keeper.traces["t1"]
    assert snapshot.personas == {
        "alpha": Persona(temperature=0.9, system_prompt="Act as a debugger.", reason="loop.stuck")
    }
    assert snapshot.version == 4 and snapshot.totals.hops == 2  # a verdict is not a step
    before, after = (decode(v, Envelope) for v in sent(out, TOPICS.event("wrap.requested")))
    assert before.personas == {}
    assert after.personas == snapshot.personas
    rebuilt = replay(spec, TOPICS, outbox.records).traces["t1"]
    assert msgspec.to_builtins(rebuilt) == msgspec.to_builtins(snapshot)
    keeper, _ = run(spec, outbox.records[2:3], keeper)  # the same record again: no change
    assert keeper.traces["t1"].version == 4


def test_the_named_agent_uses_the_shifted_prompt_and_temperature_and_no_one_else() -> None:
    spec = mesh()
    alpha, beta = spec.agent("alpha"), spec.agent("beta")
    event = Envelope(
        event_id="e",
        trace_id="t1",
        type="work.requested",
        source="task",
        personas={"alpha": Persona(temperature=0.9, system_prompt="Debug.")},
    )
    assert system_prompt(alpha, event) == f"Debug.\n\n{alpha.persona}"
    assert temperature(alpha, event) == 0.9
    assert system_prompt(beta, event) == beta.persona
    assert temperature(beta, event) == beta.temperature
