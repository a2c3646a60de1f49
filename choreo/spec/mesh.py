"""The mesh spec: agents, state schema, model tiers and budgets, loaded from YAML.

An invalid spec fails at load time with a message naming the field, never at the first task.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from choreo.schemas import reducers
from choreo.spec import check as speccheck
from choreo.spec import yamlfile
from choreo.spec.check import AUTO_TIER
from choreo.spec.code import code_problems
from choreo.spec.errors import SpecError
from choreo.spec.localmodel import LocalServer, missing_extra
from choreo.spec.supervisor import PlanSpec
from choreo.spec.watchdog import WatchdogSpec

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,200}$"

ConflictPolicy = Literal["last_writer_wins", "first_writer_wins", "reject"]
AgentKind = Literal["model", "router", "supervisor", "python"]
#: ``package.module:attribute`` (the attribute may be dotted), as a Python handler or tool.
IMPORT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
#: What kind of work an agent's steps are; ``auto`` tiers route by it (docs/MODELS.md).
TaskKind = Literal["classification", "validation", "formatting", "summarization", "reasoning"]
CHEAP_KINDS: frozenset[str] = frozenset(
    {"classification", "validation", "formatting", "summarization"}
)


#: The placeholders a ``writes`` template may use (see choreo.agent.step.build_delta).
TEMPLATE_FIELDS = frozenset({"output", "agent", "hop"})


def _check_templates(writes: dict[str, Any]) -> dict[str, Any]:
    """Reject a template typo at load time: at run time it would fail every step."""
    for name, template in writes.items():
        if not isinstance(template, str):
            continue
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            raise ValueError(f"{name}: bad template {template!r}: {exc}") from None
        unknown = sorted(used - TEMPLATE_FIELDS)
        if unknown:
            raise ValueError(
                f"{name}: unknown placeholder {unknown} in {template!r} (use "
                "{output}, {agent}, {hop}; double a brace to write it literally)"
            )
    return writes


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


#: A string that must compile as a regular expression (``re.search`` semantics).
Regex = Annotated[str, AfterValidator(_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The request field that carries a step's output-token limit: ``max_tokens`` for most
#: OpenAI-compatible servers, ``max_completion_tokens`` for newer OpenAI models.
TokenLimitField = Literal["max_tokens", "max_completion_tokens"]
#: Who serves a tier, and so how it is called (choreo.models.providers): the OpenAI chat API
#: and the servers that copy it, or Anthropic's Messages API.
Provider = Literal[
    "openai_compatible", "openai", "azure", "anthropic", "gemini", "ollama", "vllm", "llamacpp"
]


#: How a tier takes a JSON schema for its answer: OpenAI's ``response_format`` of type
#: ``json_schema`` (OpenAI, vLLM, Ollama, Gemini), or llama-cpp-python's ``json_object`` with
#: a ``schema`` (its server turns the schema into a grammar the model cannot leave).
StructuredOutput = Literal["json_schema", "json_object"]
#: How a tier's model asks for tool calls: in the API's own ``tools`` field (``native``), or
#: as a JSON answer held to a schema of the tools offered (``prompted``,
#: choreo.models.providers.prompted)
#: for servers whose function calling a model cannot use well.
ToolCalling = Literal["native", "prompted"]


class ModelTier(_Strict):
    """A model endpoint. ``script`` makes ``choreo up`` serve a scripted model, ``server`` a
    real one on this machine (choreo.spec.localmodel).

    ``structured_output`` says the endpoint can answer to a JSON schema: an agent that must
    choose between routes then asks for its choice that way (choreo.agent.routing). A tier
    with a ``server`` does so by default, and its concurrency defaults to (and may not pass)
    the server's slots.

    ``provider`` says how it is called (docs/MODELS.md, "Providers"): ``azure`` needs
    ``azure_deployment`` and ``api_version``. ``temperature: null`` never sends a temperature
    (models that refuse one), not even a persona shift's; ``max_tokens_field`` names the
    request field of the output-token limit (default: the provider's). Prices are US dollars
    per million tokens in and out; input read from the provider's prompt cache, input written
    to it (Anthropic) and reasoning output have their own prices, each by default the plain
    input or output price. ``stream: true`` reads the answer as server-sent events:
    ``first_token_timeout_s`` bounds the wait for the first event and ``idle_timeout_s`` each
    wait between events (both default ``timeout_s``), instead of ``timeout_s`` bounding the
    whole attempt.

    ``tool_calls: prompted`` offers tools in the system prompt and holds the answer to a
    schema of "a call of one of them, or the answer" (choreo.models.providers.prompted)
    instead of the API's ``tools`` field; it needs ``structured_output``. A tier with a
    ``server`` does so by default: llama-cpp-python's function calling let a small model
    write its calls as prose.
    """

    base_url: str | None = None
    model: str
    provider: Provider = "openai_compatible"
    api_key_env: str | None = None
    temperature: float | None = Field(0.2, ge=0, le=2)
    max_tokens_field: TokenLimitField = "max_tokens"
    price_in_per_mtok: float = Field(0.0, ge=0)
    price_out_per_mtok: float = Field(0.0, ge=0)
    price_cached_in_per_mtok: float | None = Field(None, ge=0)
    price_cache_write_per_mtok: float | None = Field(None, ge=0)
    price_reasoning_out_per_mtok: float | None = Field(None, ge=0)
    azure_deployment: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    api_version: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    stream: bool = False
    first_token_timeout_s: float | None = Field(None, gt=0)
    idle_timeout_s: float | None = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    concurrency: int = Field(8, ge=1)
    script: Path | None = None
    # Rate limits and the circuit breaker of the tier (choreo.models.ratelimit).
    requests_per_s: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    tokens_per_min: int | None = Field(None, ge=1)
    circuit_failures: int = Field(5, ge=1)
    circuit_cooldown_s: float = Field(30.0, gt=0)
    # While the circuit is open: ``pause`` holds calls (and the agent its partitions) until a
    # probe succeeds or the trace's deadline passes; ``fail`` fails them at once.
    on_outage: Literal["pause", "fail"] = "pause"
    #: The most tools one request offers (OpenAI and Anthropic refuse more than 128).
    max_tools: int = Field(128, ge=1, le=4096)
    server: LocalServer | None = None
    structured_output: StructuredOutput | None = None
    tool_calls: ToolCalling = "native"

    @model_validator(mode="before")
    @classmethod
    def _served_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("server") is not None:
            slots = LocalServer.model_validate(data["server"]).slots
            data = {"concurrency": slots, "structured_output": "json_object", **data}
            if data["structured_output"] is not None:  # tools prompted where a schema holds
                data = {"tool_calls": "prompted", **data}
        return data

    @model_validator(mode="after")
    def _has_endpoint(self) -> ModelTier:
        if self.base_url is None and self.script is None and self.server is None:
            raise ValueError("a model tier needs base_url, script or server")
        if self.provider == "azure" and (self.azure_deployment is None or self.api_version is None):
            raise ValueError("an azure tier needs azure_deployment and api_version")
        if not self.stream and (self.first_token_timeout_s or self.idle_timeout_s):
            raise ValueError(
                "first_token_timeout_s and idle_timeout_s bound streamed answers: set stream: true"
            )
        if self.provider == "anthropic" and self.structured_output is not None:
            raise ValueError(
                "structured_output is the OpenAI chat API's response_format, which Anthropic's "
                "Messages API does not take: leave it unset (tools are called natively)"
            )
        if self.tool_calls == "prompted" and self.structured_output is None:
            raise ValueError(
                "tool_calls: prompted holds the answer to a JSON schema: set structured_output"
            )
        if self.server is not None and self.concurrency > self.server.slots:
            raise ValueError(
                f"concurrency {self.concurrency} is more than the server's "
                f"{self.server.slots} slot(s): the rest would time out waiting on it"
            )
        return self


class Route(_Strict):
    """Where a step's output goes: the first route whose ``when`` matches the output wins.

    ``emit`` names the event type (and topic) to publish; ``finish`` ends the trace as
    completed with state field ``output`` as its result; ``fail`` ends it as failed. ``writes``
    adds to (and overrides) the agent's writes when this route is taken.
    """

    when: Regex | None = None
    writes: dict[str, Any] = Field(default_factory=dict)
    emit: str | None = Field(None, pattern=TOPIC_PATTERN)
    finish: bool = False
    fail: bool = False
    output: str | None = None
    label: str | None = Field(None, pattern=NAME_PATTERN)

    _writes = field_validator("writes")(_check_templates)

    @model_validator(mode="after")
    def _one_action(self) -> Route:
        if sum([self.emit is not None, self.finish, self.fail]) != 1:
            raise ValueError("a route needs exactly one of emit, finish, fail")
        return self


class ToolSpec(_Strict):
    """The sandbox as a tool (see choreo.agent.sandboxed and choreo.tools.sandbox.call).

    By default it runs the model's output: the output's Python code blocks run in the sandbox
    service before routing. With ``call: true`` it is offered to the model instead, as the
    function ``sandbox(code)`` the model calls when it wants to run code. ``files`` puts state
    fields (their code block, else their text) next to the code, by file name.

    ``url`` is the sandbox service's HTTP address; ``CHOREO_SANDBOX_URL`` replaces it, and
    with neither the service is reached over its Unix socket (``CHOREO_SANDBOX_SOCKET``).
    """

    name: Literal["sandbox"]
    files: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, le=60)
    call: bool = False
    url: str | None = Field(None, pattern=r"^https?://")


class FunctionToolSpec(_Strict):
    """A Python function the model may call, by import path (see choreo.tools.function).

    The import resolves against the mesh file's folder and ``python_path``; a
    ``timeout_s`` here overrides the agent's ``tool_timeout_s`` for this tool. A tool that
    can hang for real is declared ``isolation: process`` (choreo.tools.isolated).
    """

    function: str = Field(pattern=IMPORT_PATTERN)
    timeout_s: float | None = Field(None, gt=0)
    #: ``thread``: a sync function runs on the agent's tool threads (cannot be stopped);
    #: ``process``: each call runs in a child process, killed at its timeout.
    isolation: Literal["thread", "process"] = "thread"


class McpServerSpec(_Strict):
    """An MCP server whose tools the model may call (see choreo.tools.mcp).

    ``mcp`` names the server (in hop records and spans). Give ``command`` to start it as a
    child process spoken to over stdio (run in the mesh file's folder; ``python`` means the
    agent's own interpreter), or ``url`` to reach a streamable HTTP server. Its tools are
    listed when the agent starts; ``tools`` keeps only those named.
    """

    mcp: str = Field(pattern=NAME_PATTERN)
    command: list[str] | None = Field(None, min_length=1)
    url: str | None = Field(None, pattern=r"^https?://")
    env: dict[str, str] = Field(default_factory=dict)
    tools: list[str] | None = None
    #: Seconds to start and list the server, and for each call.
    timeout_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of command (stdio) or url (HTTP)")
        return self


AnyToolSpec = ToolSpec | FunctionToolSpec | McpServerSpec


class RoutingSpec(_Strict):
    """Which tiers ``model: auto`` agents use: the deterministic rule of docs/MODELS.md.

    A step of a cheap kind (classification, validation, formatting, summarization) goes to
    ``cheap``; ``reasoning`` goes to ``premium``. An agent that declares no ``task_kind`` is
    routed by the size of its rendered input: at most ``cheap_max_input_tokens`` (estimated)
    goes to ``cheap``, anything larger to ``premium``.
    """

    cheap: str
    premium: str
    cheap_max_input_tokens: int = Field(2000, ge=1)

    def tier_for(self, task_kind: TaskKind | None, input_tokens: int) -> str:
        if task_kind is not None:
            return self.cheap if task_kind in CHEAP_KINDS else self.premium
        return self.cheap if input_tokens <= self.cheap_max_input_tokens else self.premium


class ContextSpec(_Strict):
    """An agent's input-token budget (choreo.models.context).

    When the rendered prompt would exceed ``max_input_tokens``, the older items of the
    ``history`` list fields (all but the last ``keep_recent``) are folded by a summarizer step
    on ``tier`` (default: the routing's cheap tier, else the agent's own) into the state field
    ``summary_field``, and only that summary plus the recent items are sent.
    """

    max_input_tokens: int = Field(ge=1)
    history: list[str] = Field(min_length=1)
    keep_recent: int = Field(3, ge=0)
    summary_field: str = "summary"
    tier: str | None = None

    @property
    def cursor_field(self) -> str:
        """The state field counting, per history field, the leading items already folded."""
        return f"{self.summary_field}.folded"


class AgentSpec(_Strict):
    """One agent service: what it listens to, how it thinks, what it writes and emits."""

    name: str = Field(pattern=NAME_PATTERN)
    subscribe: list[str] = Field(min_length=1)
    persona: str = ""
    model: str = ""
    reads: list[str] | None = None
    writes: dict[str, Any] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    replicas: int = Field(1, ge=1, le=64)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    # Orchestration (docs/ORCHESTRATION.md): a router picks one route per task, by its rules
    # or by a model's label; a supervisor follows a plan; tools run on a model agent's output.
    kind: AgentKind = "model"
    classify: Literal["rules", "model"] = "rules"
    plan: PlanSpec | None = None
    tools: list[AnyToolSpec] = Field(default_factory=list)
    # Tool calling (docs/AGENTS.md): the model's tool calls per step, and each call's limit.
    max_tool_calls: int = Field(8, ge=0, le=256)
    tool_timeout_s: float = Field(30.0, gt=0)
    #: Threads for the agent's sync Python tools (choreo.tools.threads): calls at once.
    tool_threads: int = Field(8, ge=1, le=256)
    # Python agents (docs/AGENTS.md): the function's import path, the event types it may emit
    # and how long one step may run.
    handler: str | None = Field(None, pattern=IMPORT_PATTERN)
    emit: list[str] = Field(default_factory=list)
    timeout_s: float = Field(60.0, gt=0)
    # Model tiers (docs/MODELS.md): with ``model: auto`` the mesh's routing picks the tier.
    task_kind: TaskKind | None = None
    context: ContextSpec | None = None

    _writes = field_validator("writes")(_check_templates)

    @field_validator("subscribe")
    @classmethod
    def _topic_names(cls, topics: list[str]) -> list[str]:
        for topic in topics:
            if not re.match(TOPIC_PATTERN, topic):
                raise ValueError(f"invalid topic name {topic!r}")
        return topics

    @model_validator(mode="after")
    def _fits_kind(self) -> AgentSpec:
        if (self.handler is not None) != (self.kind == "python"):
            raise ValueError("handler: a python agent needs a handler, and only it has one")
        if self.emit and self.kind != "python":
            raise ValueError("emit: only a python agent lists the event types it emits")
        if self.kind != "python" and not (self.persona and self.model):
            raise ValueError("persona, model: an agent that asks a model needs both")
        if self.tools and self.kind != "model":
            raise ValueError("tools: only a model agent runs tools")
        if self.kind == "python":
            return self
        if (self.plan is not None) != (self.kind == "supervisor"):
            raise ValueError("plan: a supervisor needs a plan, and only a supervisor has one")
        if self.kind != "supervisor" and not self.routes:
            raise ValueError("routes: an agent needs at least one route")
        if self.kind == "router":
            if any(r.emit is None for r in self.routes):
                raise ValueError("routes: a router's routes each emit an event type")
            if self.classify == "model" and any(r.label is None for r in self.routes):
                raise ValueError(
                    "routes: a router that classifies with a model needs a "
                    "label on every route (the answer that picks it)"
                )
        names = [t.mcp for t in self.tools if isinstance(t, McpServerSpec)]
        if len(names) != len(set(names)):
            raise ValueError(f"tools: duplicate MCP server names {sorted(names)}")
        return self

    @property
    def emits(self) -> set[str]:
        """Every event type this agent may emit: its routes', its plan's assignments, or the
        ``emit`` list of a python agent."""
        assigned = {s.assign for s in self.plan.stages} if self.plan else set()
        return {r.emit for r in self.routes if r.emit} | assigned | set(self.emit)

    @property
    def called_tools(self) -> list[FunctionToolSpec | McpServerSpec | ToolSpec]:
        """The tools the model calls (functions, MCP servers, the sandbox with ``call``),
        as opposed to the sandbox run on the output."""
        return [t for t in self.tools if not isinstance(t, ToolSpec) or t.call]


class FieldSpec(_Strict):
    """One state field: how concurrent writes merge, and what happens on a conflict."""

    reducer: str = "replace"
    default: Any = None
    conflict: ConflictPolicy = "last_writer_wins"
    scratch: bool = False

    @field_validator("reducer")
    @classmethod
    def _resolvable(cls, name: str) -> str:
        try:
            reducers.resolve(name)
        except reducers.ReducerError as exc:
            raise ValueError(str(exc)) from None
        return name


class JoinSpec(_Strict):
    """Fan-in: once ``count`` steps of event type ``wait_for`` are folded into a trace, the
    keeper emits one ``emit`` event carrying the state they built (see docs/ARCHITECTURE.md).
    Arrivals are recorded in the state field ``join.<name>``, so the join survives restarts and
    replays exactly like any other state."""

    name: str = Field(pattern=NAME_PATTERN)
    wait_for: str = Field(pattern=TOPIC_PATTERN)
    count: int = Field(ge=1, le=10_000)
    emit: str = Field(pattern=TOPIC_PATTERN)

    @property
    def field(self) -> str:
        return f"join.{self.name}"


class BudgetSpec(_Strict):
    """Default hard limits per trace; a task may override them."""

    max_hops: int | None = Field(25, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, ge=0)
    max_seconds: float | None = Field(600.0, gt=0)


class TopicsSpec(_Strict):
    """The mesh's topics. ``replication_factor`` and ``min_insync_replicas`` are sent to the
    broker only when set; unset, the cluster's own defaults (``default.replication.factor``,
    ``min.insync.replicas``) apply, so a three-broker cluster set up for redundancy gets it
    without editing the spec (choreo.kafka.topics)."""

    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int | None = Field(None, ge=1)
    min_insync_replicas: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> TopicsSpec:
        if (
            self.replication_factor is not None
            and self.min_insync_replicas is not None
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} is more than "
                f"replication_factor {self.replication_factor}: no write could ever succeed"
            )
        return self


class MeshSpec(_Strict):
    """A whole mesh. ``entry`` lists the event types a newly admitted task is sent to."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    entry: list[str] = Field(min_length=1)
    state: dict[str, FieldSpec] = Field(default_factory=dict)
    models: dict[str, ModelTier] = Field(min_length=1)
    agents: list[AgentSpec] = Field(min_length=1)
    budgets: BudgetSpec = Field(default_factory=BudgetSpec)
    topics: TopicsSpec = Field(default_factory=TopicsSpec)
    max_snapshot_bytes: int = Field(1_000_000, ge=1024)
    watchdog: WatchdogSpec = Field(default_factory=WatchdogSpec)
    joins: list[JoinSpec] = Field(default_factory=list)
    routing: RoutingSpec | None = None
    #: Folders where python handlers and tools are imported from, besides the mesh's own.
    python_path: list[Path] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_resolve(self) -> MeshSpec:
        """Every name the spec uses names something it declares (choreo.spec.check);
        all problems are raised together, each with its own path."""
        found = speccheck.problems(self)
        if found:
            raise speccheck.SpecProblems(found)
        return self

    def tier_for(self, agent: AgentSpec, input_tokens: int = 0) -> str:
        """The tier of one of ``agent``'s steps: its own, or the routing's choice for ``auto``."""
        if agent.model != AUTO_TIER:
            return agent.model
        assert self.routing is not None  # checked at load time
        return self.routing.tier_for(agent.task_kind, input_tokens)

    def summary_tier(self, agent: AgentSpec) -> str:
        """The tier of ``agent``'s summarizer steps: its context's, else the cheapest known."""
        if agent.context is not None and agent.context.tier is not None:
            return agent.context.tier
        if self.routing is not None:
            return self.routing.cheap
        return agent.model

    def agent(self, name: str) -> AgentSpec:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise SpecError(
            f"mesh {self.name!r} has no agent {name!r} (agents: "
            f"{', '.join(a.name for a in self.agents)})"
        )

    def field(self, name: str) -> FieldSpec:
        """The declared spec of a state field; undeclared fields are ``replace``."""
        return self.state.get(name, _UNDECLARED)

    def joins_on(self, event_type: str) -> list[JoinSpec]:
        """The joins that count steps of ``event_type``."""
        return [j for j in self.joins if j.wait_for == event_type]

    @property
    def agent_topics(self) -> list[str]:
        """Every event-type topic of the mesh, sorted."""
        topics = set(self.entry) | {t for a in self.agents for t in a.subscribe}
        return sorted(topics)


_UNDECLARED = FieldSpec()


def parse_mesh(
    data: Any,
    source: str = "<mesh>",
    base_dir: Path | None = None,
    document: yamlfile.Document | None = None,
) -> MeshSpec:
    """Validate a mesh from builtins; relative script paths resolve against ``base_dir``, and
    then each script must exist. ``document`` (the parsed file) puts line numbers in errors."""
    document = document or yamlfile.Document(data)
    try:
        spec = MeshSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(yamlfile.describe(source, "mesh spec", exc, document)) from None
    if base_dir is None:
        return spec
    python_path = [(base_dir / p).resolve() for p in spec.python_path] + [base_dir.resolve()]
    models = {
        name: tier.model_copy(update={"script": (base_dir / tier.script).resolve()})
        if tier.script is not None and not tier.script.is_absolute()
        else tier
        for name, tier in spec.models.items()
    }
    models = {name: _served_from(tier, base_dir) for name, tier in models.items()}
    missing = [
        (("models", name, "script"), f"no such model script: {tier.script}")
        for name, tier in models.items()
        if tier.script is not None and not tier.script.is_file()
    ] + [
        (("models", name, "server"), problem)
        for name, tier in models.items()
        if tier.server is not None
        for problem in _server_problems(tier.server)
    ]
    if missing:
        raise SpecError(yamlfile.describe_problems(source, "mesh spec", missing, document))
    return spec.model_copy(update={"models": models, "python_path": python_path})


def _served_from(tier: ModelTier, base_dir: Path) -> ModelTier:
    """``tier`` with its server's GGUF path resolved against the spec's folder."""
    if tier.server is None or tier.server.gguf is None or tier.server.gguf.is_absolute():
        return tier
    server = tier.server.model_copy(update={"gguf": (base_dir / tier.server.gguf).resolve()})
    return tier.model_copy(update={"server": server})


def _server_problems(server: LocalServer) -> list[str]:
    """What keeps ``server`` from starting here: the extra not installed, no GGUF file."""
    extra = missing_extra(server)
    if extra is not None:
        return [extra]
    if server.gguf is not None and not server.gguf.is_file():
        return [f"no such GGUF file: {server.gguf}"]
    return []


def load_mesh(path: str | Path, *, code: bool = False) -> MeshSpec:
    """Load and validate a mesh spec from a YAML file; with ``code``, also import every
    handler and tool it names and look for its MCP commands (choreo.spec.code), as the
    commands that start the mesh do. Raises ``SpecError`` with every problem at its line."""
    path = Path(path)
    document = yamlfile.load(path, "mesh spec", SpecError)
    spec = parse_mesh(document.data, str(path), path.parent, document)
    if code and (found := code_problems(spec)):
        problems = [(p.loc, p.message) for p in found]
        raise SpecError(yamlfile.describe_problems(str(path), "mesh spec", problems, document))
    return spec
