"""A one-agent mesh whose scripted model answers each task the way its input asks: whole,
huge, with half an emoji, undecodable, trickling, without content, or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from choreo.schemas import Envelope
from tests.conftest import RunningMesh

TIER = "faulty"

#: Replies by the task's input (the rule's ``user`` pattern).
RULES: list[dict[str, Any]] = [
    {"when": {"user": "(?m)^whole"}, "reply": "a whole answer"},
    {"when": {"user": "(?m)^huge"}, "reply": "0123456789", "repeat": 60_000},
    {"when": {"user": "(?m)^wide"}, "reply": "WIDE 123456789", "repeat": 30_000},
    {"when": {"user": "(?m)^surrogate"}, "reply": "half an emoji ", "fault": "lone_surrogate"},
    {"when": {"user": "(?m)^gzip"}, "reply": "not compressed", "fault": "gzip_lie"},
    {"when": {"user": "(?m)^trickle"}, "reply": "slowly " * 40, "fault": "trickle"},
    {
        "when": {"user": "(?m)^null"},
        "reply": "five words were billed here",
        "fault": "null_content",
    },
    {"when": {"user": "(?m)^broken"}, "reply": "never sent", "fault": "server_error"},
]


def one_agent_mesh(
    folder: Path, *, script: dict[str, Any] | None = None, tier: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The mesh as a dict (its script written to ``folder``): one partition, so every task
    shares the agent's one partition; the agent writes its whole reply to ``answer`` and
    finishes with it. A reply starting ``WIDE`` is also written to three more fields, so its
    step record is over the broker's record size even after the reply is cut."""
    (folder / "model.yaml").write_text(
        yaml.safe_dump({"model": "faulty", "rules": RULES, **(script or {})})
    )
    return {
        "name": "liveness",
        "entry": ["task.received"],
        "topics": {"partitions": 1},
        "state": {name: {"reducer": "replace"} for name in ("answer", "echo", "copy", "more")},
        "models": {
            TIER: {
                "model": "faulty",
                "script": "model.yaml",
                "timeout_s": 10,
                "max_retries": 0,
                "circuit_failures": 50,
                "price_in_per_mtok": 1.0,
                "price_out_per_mtok": 2.0,
                **(tier or {}),
            }
        },
        "budgets": {"max_hops": 4, "max_seconds": 120},
        "agents": [
            {
                "name": "solo",
                "subscribe": ["task.received"],
                "persona": "You answer the task.",
                "model": TIER,
                "reads": ["input"],
                "writes": {"answer": "{output}"},
                "routes": [
                    {
                        "when": "^WIDE",
                        "finish": True,
                        "output": "answer",
                        "writes": {"echo": "{output}", "copy": "{output}", "more": "{output}"},
                    },
                    {"finish": True, "output": "answer"},
                ],
            }
        ],
    }


def model_url(mesh: RunningMesh) -> str:
    """The base URL (``.../v1``) of the mesh's scripted model server."""
    return mesh.model_url(TIER)


def committed(mesh: RunningMesh, group: str, tp: TopicPartition) -> int:
    """The offset ``group`` has committed on ``tp`` (-1 when none)."""

    async def ask() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=mesh.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            return await consumer.committed(tp) or -1
        finally:
            await consumer.stop()

    return int(mesh.run(ask()))


class Finish:
    """User code for the one agent (``behaviour=``): finishes the trace at once, no model call."""

    async def step(self, event: Envelope) -> list[Envelope]:
        return [
            Envelope(
                event_id=f"{event.event_id}.solo",
                trace_id=event.trace_id,
                causation_id=event.event_id,
                type="trace.finish",
                source="solo",
                hop=event.hop + 1,
                payload={"output": "done"},
            )
        ]

    async def aclose(self) -> None:
        return None
