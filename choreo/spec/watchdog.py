"""The watchdog's knobs: loop thresholds and what the mesh does when a loop shows up.

The mesh spec carries them as its optional ``watchdog:`` section; every field has a default,
so a mesh that says nothing still gets loop protection.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEBUGGER_PROMPT = (
    "You are repeating yourself: your recent outputs did not move the task forward. "
    "Act as a debugger of your own work. State in one sentence why the previous attempts "
    "failed, then produce one materially different attempt. Do not restate earlier output."
)


def app_id(topic_prefix: str) -> str:
    """The watchdog's faust app id, which is also its consumer group."""
    return f"{topic_prefix}-watchdog"


class WatchdogSpec(BaseModel):
    """Thresholds of the loop detectors and the verdict policy. Budgets live in ``budgets:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ngram: int = Field(3, ge=1, le=8, description="character n-gram size of the stuck detector")
    similarity: float = Field(
        0.95, gt=0, le=1, description="cosine similarity at or above which two outputs match"
    )
    stuck_repeats: int = Field(
        3, ge=1, description="matching successive outputs in a row that make an agent stuck"
    )
    stuck_window: int = Field(
        5, ge=1, description="earlier outputs of the agent each output is compared with"
    )
    revisit_window: int = Field(
        8, ge=3, description="recent state shapes the revisit rule looks back over"
    )
    revisit_repeats: int = Field(
        2,
        ge=1,
        description="returns to an earlier state shape within the window that make a revisit loop",
    )
    tool_repeats: int = Field(
        3, ge=2, description="calls of one tool with the same arguments that make a loop"
    )
    ping_pong_rounds: int = Field(
        3, ge=2, description="A->B rounds with no new state that make a ping-pong"
    )
    shift_temperature: float = Field(
        0.9, ge=0, le=2, description="temperature of a persona-shifted agent"
    )
    shift_system_prompt: str = Field(
        DEBUGGER_PROMPT, min_length=1, description="system prompt of a persona-shifted agent"
    )
    halt_after_shift: int = Field(
        1,
        ge=1,
        description="hops of an agent that ran with its shifted persona and still "
        "show loop evidence, that halt the trace",
    )
