"""The workloads both systems run, described once: prompts, the mock model's script, the meshes.

Every model call of either system goes over HTTP to one scripted OpenAI-compatible server
(``choreo model-server``), so both pay the same model latency and the same HTTP stack on the
server side. The replies drive the same control flow in both: the editor approves the third
draft, so the writer/editor loop makes six model calls in each system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHAIN = 4
FAN_OUT = 8
IN_FLIGHT = 64


@dataclass(frozen=True)
class Workload:
    """One benchmark shape: ``batch`` tasks at once (1 = one at a time), ``calls`` per task."""

    name: str
    batch: int
    calls: int
    description: str


WORKLOADS = (
    Workload("chain4", 1, CHAIN, f"a {CHAIN}-agent chain, one task at a time"),
    Workload("writer-editor", 1, 6, "writer/editor loop until approved (6 model calls)"),
    Workload(
        "fan-out8", 1, FAN_OUT + 1, f"fan-out to {FAN_OUT} agents, a join, then one synthesizer"
    ),
    Workload("in-flight64", IN_FLIGHT, CHAIN, f"{IN_FLIGHT} {CHAIN}-agent chains in flight"),
)


def step_persona(index: int) -> str:
    return f"You are step {index}. Pass the work on."


def researcher_persona(index: int) -> str:
    return f"You are researcher {index}. Give one finding."


WRITER = "You are the writer. Write the piece in `input`, revising per `review`."
EDITOR = "You are the editor. Answer APPROVED or REVISE: with changes."
SYNTHESIZER = "You are the synthesizer. Combine every finding."


def model_script(latency_ms: float) -> dict[str, Any]:
    """The mock model: first matching rule answers; ``latency_ms`` is added to every call."""
    writer, editor = "You are the writer", "You are the editor"
    return {
        "model": "peer-bench",
        "latency_ms": latency_ms,
        "rules": [
            {"when": {"system": writer, "user": r"\[draft 2\]"}, "reply": "[draft 3] final"},
            {"when": {"system": writer, "user": r"\[draft 1\]"}, "reply": "[draft 2] better"},
            {"when": {"system": writer}, "reply": "[draft 1] first"},
            {"when": {"system": editor, "user": r"\[draft 3\]"}, "reply": "APPROVED"},
            {"when": {"system": editor}, "reply": "REVISE: tighten it"},
            {"when": {"system": "You are the synthesizer"}, "reply": "BRIEF: combined"},
            {"when": {"system": "You are researcher"}, "reply": "a finding"},
            {"when": {"system": "You are step"}, "reply": "passed on"},
        ],
    }


def _model(base_url: str) -> dict[str, Any]:
    # as many concurrent calls per agent process as the in-flight workload has tasks
    return {"mock": {"model": "peer-bench", "base_url": base_url, "concurrency": IN_FLIGHT}}


def chain_mesh(base_url: str) -> dict[str, Any]:
    agents = [
        {
            "name": f"step-{i}",
            "subscribe": [f"step.{i}"],
            "persona": step_persona(i),
            "model": "mock",
            "reads": ["input", "last"],
            "writes": {"last": "{output}"},
            "routes": [
                {"emit": f"step.{i + 1}"} if i < CHAIN else {"finish": True, "output": "last"}
            ],
        }
        for i in range(1, CHAIN + 1)
    ]
    return {
        "name": "peer-chain",
        "entry": ["step.1"],
        "state": {"last": {"reducer": "replace"}},
        "models": _model(base_url),
        "agents": agents,
        "budgets": {"max_hops": CHAIN + 2, "max_seconds": 120},
    }


def writer_editor_mesh(base_url: str) -> dict[str, Any]:
    return {
        "name": "peer-writer-editor",
        "entry": ["draft.requested"],
        "state": {"draft": {"reducer": "replace"}, "review": {"reducer": "replace"}},
        "models": _model(base_url),
        "budgets": {"max_hops": 12, "max_seconds": 120},
        "agents": [
            {
                "name": "writer",
                "subscribe": ["draft.requested", "revision.requested"],
                "persona": WRITER,
                "model": "mock",
                "reads": ["input", "draft", "review"],
                "writes": {"draft": "{output}"},
                "routes": [{"emit": "draft.ready"}],
            },
            {
                "name": "editor",
                "subscribe": ["draft.ready"],
                "persona": EDITOR,
                "model": "mock",
                "reads": ["input", "draft"],
                "writes": {"review": "{output}"},
                "routes": [
                    {"when": "^APPROVED", "finish": True, "output": "draft"},
                    {"when": "^REVISE", "emit": "revision.requested"},
                ],
            },
        ],
    }


def fan_out_mesh(base_url: str) -> dict[str, Any]:
    researchers = [
        {
            "name": f"researcher-{i}",
            "subscribe": ["research.requested"],
            "persona": researcher_persona(i),
            "model": "mock",
            "reads": ["input"],
            "writes": {"findings": "{output}"},
            "routes": [{"emit": "research.done"}],
        }
        for i in range(1, FAN_OUT + 1)
    ]
    synthesizer = {
        "name": "synthesizer",
        "subscribe": ["synthesis.requested"],
        "persona": SYNTHESIZER,
        "model": "mock",
        "reads": ["input", "findings"],
        "writes": {"summary": "{output}"},
        "routes": [{"finish": True, "output": "summary"}],
    }
    return {
        "name": "peer-fan-out",
        "entry": ["research.requested"],
        "state": {"findings": {"reducer": "append"}, "summary": {"reducer": "replace"}},
        "models": _model(base_url),
        "budgets": {"max_hops": FAN_OUT + 4, "max_seconds": 120},
        "joins": [
            {
                "name": "research",
                "wait_for": "research.done",
                "count": FAN_OUT,
                "emit": "synthesis.requested",
            }
        ],
        "agents": [*researchers, synthesizer],
    }


#: The mesh each workload runs on (the in-flight workload reuses the chain).
MESHES = {
    "chain4": chain_mesh,
    "writer-editor": writer_editor_mesh,
    "fan-out8": fan_out_mesh,
    "in-flight64": chain_mesh,
}
