"""One connected OpenTelemetry trace per task, across every process that touched it."""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import pytest

from choreo.schemas import HopRecord
from tests.conftest import ProcessMesh, wait_until
from tests.telemetry.otlp import CLIENT, CONSUMER, PRODUCER, OtlpReceiver, Span

pytestmark = pytest.mark.integration

KEEPER, WRITER, EDITOR = "choreo-keeper", "choreo-agent-writer", "choreo-agent-editor"


def _task_trace(
    receiver: OtlpReceiver, mesh: ProcessMesh, trace_id: str, hops: list[HopRecord]
) -> list[Span]:
    """The task's spans once all have arrived (else none): its submission, then per step the
    agent's span with its model call and the keeper's, plus the keeper's intake and admission."""
    spans = receiver.spans()
    roots = [
        s
        for s in spans
        if s.name == f"send {mesh.topics.tasks}" and s.attributes.get("choreo.trace_id") == trace_id
    ]
    if len(roots) != 1:
        return []
    trace = [s for s in spans if s.trace_id == roots[0].trace_id]
    steps = [s for s in trace if "gen_ai.agent.name" in s.attributes and s.kind == CONSUMER]
    chats = [s for s in trace if s.name.startswith("chat ")]
    keeper = [s for s in trace if s.service == KEEPER]
    done = len(steps) >= len(hops) and len(chats) >= len(hops) and len(keeper) >= 2 + len(hops)
    return trace if done else []


def test_each_task_is_one_connected_trace_through_keeper_writer_and_editor(
    observed_mesh: ProcessMesh, receiver: OtlpReceiver
) -> None:
    mesh = observed_mesh
    trace_ids = [mesh.submit(f"traced task {n}") for n in range(2)]
    for trace_id in trace_ids:
        assert mesh.result(trace_id).status == "completed"
    otel_ids = set()
    for trace_id in trace_ids:
        hops = mesh.hops(trace_id)
        assert len(hops) == 6
        trace = wait_until(
            partial(_task_trace, receiver, mesh, trace_id, hops),
            30,
            message=f"every span of task {trace_id}",
        )
        by_id = {s.span_id: s for s in trace}
        otel_ids.add(trace[0].trace_id)

        # Connected: one root, the submission; every other span's parent is in the trace.
        roots = [s for s in trace if not s.parent_id]
        assert [(r.name, r.kind, r.service) for r in roots] == [
            (f"send {mesh.topics.tasks}", PRODUCER, "choreo-cli")
        ]
        assert all(s.parent_id in by_id for s in trace if s.parent_id)
        assert {s.service for s in trace} == {"choreo-cli", KEEPER, WRITER, EDITOR}

        # No span about this task lies outside its trace.
        elsewhere = [
            s
            for s in receiver.spans()
            if s.attributes.get("choreo.trace_id") == trace_id and s.trace_id != trace[0].trace_id
        ]
        assert elsewhere == []

        # The keeper hands every step to the next service: each agent step continues a
        # keeper span, and the keeper applies each step in a child of the agent's span.
        children: dict[str, list[Span]] = defaultdict(list)
        for span in trace:
            children[span.parent_id].append(span)
        for hop in hops:
            [step] = [
                s
                for s in trace
                if s.kind == CONSUMER
                and s.attributes.get("messaging.message.id") == hop.causation_id
            ]
            assert step.service == f"choreo-agent-{hop.agent}"
            assert step.name == f"process {step.attributes['messaging.destination.name']}"
            assert step.attributes["messaging.system"] == "kafka"
            assert (
                step.attributes["messaging.consumer.group.name"]
                == f"{mesh.topics.prefix}.agent.{hop.agent}"
            )
            assert step.attributes["gen_ai.agent.name"] == hop.agent
            assert by_id[step.parent_id].service == KEEPER
            [applied] = [s for s in children[step.span_id] if s.service == KEEPER]
            assert applied.attributes["messaging.destination.name"] == mesh.topics.outbox

            # The model call's tokens are the ones the hop record accounts.
            [chat] = [s for s in children[step.span_id] if s.name.startswith("chat ")]
            assert chat.kind == CLIENT
            assert chat.attributes["gen_ai.operation.name"] == "chat"
            assert chat.attributes["gen_ai.provider.name"] == "choreo.scripted"
            assert chat.attributes["gen_ai.agent.name"] == hop.agent
            assert chat.attributes["gen_ai.usage.input_tokens"] == hop.usage.tokens_in > 0
            assert chat.attributes["gen_ai.usage.output_tokens"] == hop.usage.tokens_out > 0
            assert chat.attributes["choreo.cost_usd"] == pytest.approx(hop.usage.cost)
            assert "gen_ai.input.messages" not in chat.attributes  # content is opt-in
    assert len(otel_ids) == len(trace_ids)
