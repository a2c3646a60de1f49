"""The judge prompt and how its answer reads: PASS or FAIL, then the reasons."""

from __future__ import annotations

import re
from typing import Any

from choreo.schemas.codec import as_text
from choreo.spec.mesh import AgentSpec
from choreo.spec.supervisor import StageSpec
from choreo.supervisor.plan import Verdict

_ANSWER = re.compile(r"^\W*(PASS|FAIL)\b\W*(.*)$", re.IGNORECASE | re.DOTALL)


def messages(agent: AgentSpec, stage: StageSpec, state: dict[str, Any]) -> list[dict[str, str]]:
    """The supervisor's persona, the stage's criteria, then the brief and the result."""
    system = (
        f"{agent.persona}\n\nYou are judging stage `{stage.name}`. Criteria: "
        f"{stage.judge}\nAnswer PASS: or FAIL: followed by your reasons."
    )
    user = (
        f"## input\n{_text(state.get('input'))}\n\n"
        f"## {stage.result}\n{_text(state.get(stage.result))}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse(stage: str, attempt: int, answer: str) -> Verdict:
    """A verdict from the judge's answer; an answer that is neither PASS nor FAIL fails."""
    match = _ANSWER.match(answer)
    if match is None:
        return Verdict(
            stage,
            attempt,
            False,
            f"the judge answered neither PASS nor FAIL: {answer.strip()[:200]}",
        )
    return Verdict(
        stage,
        attempt,
        match.group(1).upper() == "PASS",
        match.group(2).strip() or match.group(1).upper(),
    )


def _text(value: Any) -> str:
    if value is None:
        return "(missing)"
    return as_text(value)
