"""A Python agent and a tool for the liveness tests: the agent asks its model about the task
and finishes with the answer, so a model fault meets user code the way it meets a prompt
agent; the tool gives a prompt agent a tool loop."""

from __future__ import annotations

import choreo


@choreo.agent
async def answer(step: choreo.Step) -> choreo.Result:
    """Finishes the trace with the model's answer to the task."""
    reply = await step.complete(step.input)
    return step.finish(output=reply.text)


def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: Any text.
    """
    return text
