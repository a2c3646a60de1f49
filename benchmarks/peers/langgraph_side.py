"""The same workloads as LangGraph graphs in this process, in memory or with SQLite checkpoints.

Each node is one model call over HTTP to the shared mock model (an ``httpx.AsyncClient``, the
leanest client a LangGraph user could pick), and the graph's state carries what the mesh's
state carries, with the same reducers (``append`` is ``operator.add`` on a list).
"""

from __future__ import annotations

import operator
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from workloads import (
    CHAIN,
    EDITOR,
    FAN_OUT,
    SYNTHESIZER,
    WRITER,
    researcher_persona,
    step_persona,
)


class Model:
    """Chat completions against the mock model; returns the reply text."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def complete(self, system: str, fields: dict[str, Any]) -> str:
        user = "\n".join(f"{name}: {value}" for name, value in fields.items() if value)
        response = await self.client.post(
            "/chat/completions",
            json={
                "model": "peer-bench",
                "max_tokens": 256,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
            },
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])


class ChainState(TypedDict, total=False):
    input: str
    last: str


class DraftState(TypedDict, total=False):
    input: str
    draft: str
    review: str


class FanOutState(TypedDict, total=False):
    input: str
    findings: Annotated[list[str], operator.add]
    summary: str


def chain_graph(model: Model) -> StateGraph:
    graph = StateGraph(ChainState)

    def step(index: int) -> Callable[[ChainState], Awaitable[ChainState]]:
        async def node(state: ChainState) -> ChainState:
            return {"last": await model.complete(step_persona(index), dict(state))}

        return node

    previous = START
    for i in range(1, CHAIN + 1):
        graph.add_node(f"step-{i}", step(i))
        graph.add_edge(previous, f"step-{i}")
        previous = f"step-{i}"
    graph.add_edge(previous, END)
    return graph


def writer_editor_graph(model: Model) -> StateGraph:
    graph = StateGraph(DraftState)

    async def writer(state: DraftState) -> DraftState:
        return {"draft": await model.complete(WRITER, dict(state))}

    async def editor(state: DraftState) -> DraftState:
        fields = {"input": state.get("input"), "draft": state.get("draft")}
        return {"review": await model.complete(EDITOR, fields)}

    graph.add_node("writer", writer)
    graph.add_node("editor", editor)
    graph.add_edge(START, "writer")
    graph.add_edge("writer", "editor")
    graph.add_conditional_edges(
        "editor", lambda s: END if s.get("review", "").startswith("APPROVED") else "writer"
    )
    return graph


def fan_out_graph(model: Model) -> StateGraph:
    graph = StateGraph(FanOutState)

    def researcher(index: int) -> Callable[[FanOutState], Awaitable[FanOutState]]:
        async def node(state: FanOutState) -> FanOutState:
            finding = await model.complete(researcher_persona(index), {"input": state["input"]})
            return {"findings": [finding]}

        return node

    async def synthesizer(state: FanOutState) -> FanOutState:
        return {"summary": await model.complete(SYNTHESIZER, dict(state))}

    graph.add_node("synthesizer", synthesizer)
    for i in range(1, FAN_OUT + 1):
        graph.add_node(f"researcher-{i}", researcher(i))
        graph.add_edge(START, f"researcher-{i}")
        graph.add_edge(f"researcher-{i}", "synthesizer")  # runs once, after all of them
    graph.add_edge("synthesizer", END)
    return graph


GRAPHS = {
    "chain4": chain_graph,
    "writer-editor": writer_editor_graph,
    "fan-out8": fan_out_graph,
    "in-flight64": chain_graph,
}


class LangGraphSystem:
    """Runs one task of a workload, timing it from invoke to the final state."""

    def __init__(self, name: str, model: Model, checkpointer: Any) -> None:
        self.name = name
        self.compiled = {
            workload: build(model).compile(checkpointer=checkpointer)
            for workload, build in GRAPHS.items()
        }

    async def run(self, workload: str, text: str) -> float:
        """Seconds from invoke to the graph's final state; one thread per task."""
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        started = time.perf_counter()
        await self.compiled[workload].ainvoke({"input": text}, config)
        return time.perf_counter() - started


@asynccontextmanager
async def langgraph_systems(base_url: str, workdir: Path) -> AsyncIterator[list[LangGraphSystem]]:
    """LangGraph in memory and with its SQLite checkpointer, sharing one HTTP client."""
    async with (
        httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=256)
        ) as client,
        AsyncSqliteSaver.from_conn_string(str(workdir / "checkpoints.db")) as sqlite,
    ):
        model = Model(client)
        yield [
            LangGraphSystem("langgraph (in memory)", model, InMemorySaver()),
            LangGraphSystem("langgraph (SQLite)", model, sqlite),
        ]
