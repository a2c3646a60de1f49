"""Python agents for the platform tests: each first word of the task picks a behaviour, good
or broken, so one mesh exercises every way user code can end a step."""

from __future__ import annotations

import asyncio

import choreo


def _read_only(step: choreo.Step) -> bool:
    try:
        step.state["input"] = "changed"  # type: ignore[index]
    except TypeError:
        return True
    return False


@choreo.agent
async def dispatch(step: choreo.Step) -> choreo.Result:
    """Hands the task to the tool tester, unless the task asks it to misbehave."""
    word = step.input.split()[0]
    if word == "raise":
        raise LookupError("no order 7 on file")
    if word == "hang":
        await asyncio.sleep(3600)
    if word == "wrong":
        return {"emit": "tools.asked"}  # type: ignore[return-value]
    if word == "elsewhere":
        return step.emit("elsewhere")
    if word == "unjson":
        return step.emit("tools.asked", {"seen": object()})
    if word in ("spend", "unreachable"):
        return step.emit(f"{word}.asked")
    step.log.info("dispatching", extra={"word": word})
    return step.emit(
        "tools.asked",
        {
            "seen": {
                "version": step.version,
                "hop": step.hop,
                "hops_left": step.left.hops,
                "trace": step.trace_id,
                "read_only": _read_only(step),
                "event": step.event_type,
            }
        },
    )


@choreo.agent
async def spender(step: choreo.Step) -> choreo.Result:
    """Calls its model until the trace's token budget stops it."""
    while True:
        await step.complete("count to ten")


#: What the planner hands out, one a round: every round's state and output are new.
TICKETS = (
    "kettle",
    "lamp",
    "drill",
    "tent",
    "piano",
    "scooter",
    "blender",
    "compass",
    "violin",
    "kayak",
    "easel",
    "hammock",
    "lantern",
    "mixer",
    "rake",
    "sextant",
    "toaster",
    "ukulele",
    "wok",
    "yoyo",
)


@choreo.agent
async def planner(step: choreo.Step) -> choreo.Result:
    """Hands the checker the next ticket until they run out (then the trace completes); a
    task that starts with ``hello`` completes at once."""
    done = int(step.state.get("round") or 0)
    if step.input.startswith("hello") or done == len(TICKETS):
        return step.finish(output=f"checked {done} tickets")
    return step.emit(
        "check.asked", {"round": done + 1, "ticket": TICKETS[done]}, text=f"ticket {TICKETS[done]}"
    )


@choreo.agent
async def forward(step: choreo.Step) -> choreo.Result:
    """Sends the task to ``<first word>.asked`` (refused unless the agent emits it)."""
    return step.emit(f"{step.input.split()[0]}.asked")
