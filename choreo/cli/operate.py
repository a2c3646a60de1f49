"""Commands that run the mesh: the broker, topics, the contract, services, ``up``, the demo.

Brokers, processes, Kafka and the views load when a command runs, not for ``choreo --help``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from choreo.cli.common import AddCommand, UsageError, bootstrap_of, positive, with_client
from choreo.local.examples import example_mesh
from choreo.observe.settings import Settings
from choreo.spec.mesh import MeshSpec, load_mesh
from choreo.tools.sandbox.limits import SandboxLimits

if TYPE_CHECKING:
    from choreo.client import Client
    from choreo.kafka.cluster import KafkaCluster
    from choreo.local.processes import ProcessGroup
    from choreo.observe.terminal import Sheet

DEMO_MESH = example_mesh("writer-editor")
DEMO_TASK = "Write a short piece on why event-driven agents need shared, versioned state."


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a broker in the foreground until Ctrl-C or SIGTERM; its address goes to stderr."""
    from choreo.kafka.broker import ApacheKafka, EmbeddedBroker, fetch_jars
    from choreo.observe import terminal as output

    if args.kafka:
        fetch_jars(sys.stdout)  # once: Maven's downloads reported as they go
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop ends the broker too
    broker: EmbeddedBroker | ApacheKafka | KafkaCluster
    if args.brokers > 1 and not args.kafka:
        raise UsageError("--brokers needs --kafka: the embedded broker runs one node")
    if args.brokers > 1:
        if args.port is not None:
            raise UsageError("--port picks one node's port; a cluster's nodes take free ones")
        from choreo.kafka.cluster import KafkaCluster

        name = f"Apache Kafka cluster of {args.brokers} nodes"
        broker = KafkaCluster(args.brokers, log_path=args.log)
        keeps = " (replication 3, min in-sync 2; data in fresh storage folders of this run)"
    elif args.kafka:
        name, broker = "Apache Kafka", ApacheKafka(port=args.port, log_path=args.log)
        keeps = " (data in a fresh storage folder of this run)"
    else:
        name, broker = "embedded broker", EmbeddedBroker(port=args.port, log_path=args.log)
        keeps = " (data in memory only: gone when it stops)"
    broker.start()  # a BrokerError says what is missing and how to get it
    try:
        output.say((name, "bold"), " listening on ", (broker.bootstrap, "cyan"), keeps)
        output.say(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
        print(broker.bootstrap, file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.local.launch import create_topics
    from choreo.observe import terminal as output

    spec = load_mesh(args.mesh)
    created = create_topics(spec, bootstrap_of(settings), settings)
    output.say(
        f"{len(created)} topics created"
        + (f": {', '.join(created)}" if created else " (all existed)")
    )
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.observe import terminal as output
    from choreo.schemas import export

    if args.check:
        out = Path(args.out) if args.out else export.DEFAULT_OUT
        stale = export.stale(out)
        if stale:
            output.error(
                f"stale schema files in {out}: {', '.join(stale)}; run "
                f"`choreo schema export --out {out}`"
            )
            return 1
        output.say(f"schema files in {out} are current")
        return 0
    out = Path(args.out) if args.out else export.DEFAULT_OUT
    output.say(f"wrote {len(export.write(out))} files to {out}")
    return 0


def cmd_model_server(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.model_server.server import serve

    serve(Path(args.script), host=args.host, port=args.port)
    return 0


def cmd_local_model(args: argparse.Namespace, settings: Settings) -> int:
    """Serve a GGUF model with llama.cpp (the local-model extra) until Ctrl-C or SIGTERM."""
    from choreo.model_server.llama import serve_llama
    from choreo.spec.localmodel import INSTALL_HINT, LocalServer

    server = LocalServer(
        gguf=args.gguf, threads=args.threads, context=args.context, chat_format=args.chat_format
    )
    try:
        serve_llama(args.model, server, host=args.host, port=args.port)
    except (ImportError, LookupError) as exc:
        raise UsageError(f"choreo local-model needs the local-model extra: {INSTALL_HINT}") from exc
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one service in the foreground: what a container runs."""
    if args.service == "sandbox":
        from choreo.sandbox.__main__ import main as sandbox_main

        sandbox_main(
            [
                *(["--socket", args.socket] if args.socket else []),
                *(["--port", str(args.port)] if args.port is not None else []),
            ]
        )
        return 0
    if args.mesh is None:
        raise UsageError(f"choreo run {args.service}: --mesh is required")
    spec = load_mesh(args.mesh, code=args.service == "agent")
    if args.service == "agent":  # a bad name fails before any broker is contacted
        if not args.agent:
            raise UsageError(
                "choreo run agent: --agent NAME is required (agents: "
                f"{', '.join(a.name for a in spec.agents)})"
            )
        spec.agent(args.agent)
    bootstrap = bootstrap_of(settings)
    from choreo.local.launch import create_topics

    service = f"agent:{args.agent}" if args.service == "agent" else args.service
    if args.service != "watchdog":  # the watchdog creates its own as it starts
        create_topics(spec, bootstrap, settings, service)  # the ones it uses: it may see no other
    from choreo.kafka.runner import run_service

    if args.service == "keeper":
        from choreo.keeper.service import KeeperService

        run_service("keeper", settings, lambda: KeeperService(spec, bootstrap, settings))
    elif args.service == "agent":
        from choreo.agent.service import AgentService
        from choreo.local import services  # noqa: F401  (every agent kind registered)

        run_service(
            service,
            settings,
            lambda: AgentService(spec, args.agent, bootstrap, settings),
        )
    elif args.service == "watchdog":
        from choreo.watchdog.app import WatchdogService

        run_service("watchdog", settings, lambda: WatchdogService(spec, bootstrap, settings))
    return 0


def _status_sheet(spec: MeshSpec, bootstrap: str, group: ProcessGroup) -> Sheet:
    from choreo.observe import terminal as output

    sheet = output.Sheet(
        ["service", "pid", "status", "log"], title=f"mesh {spec.name} on {bootstrap}"
    )
    for child in group.children:
        style = "green" if child.status == "running" else "red"
        sheet.add(
            child.name, str(child.pid), output.line((child.status, style)), str(child.log_path)
        )
    return sheet


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _event(message: str) -> None:
    """One time-stamped line: reads the same in a terminal and in a log file."""
    from choreo.observe import terminal as output

    output.say((time.strftime("%H:%M:%S "), "dim"), message)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.kafka.broker import broker_session
    from choreo.local import announce as local
    from choreo.local.launch import start_mesh
    from choreo.local.supervise import Supervisor
    from choreo.observe import terminal as output

    spec = load_mesh(args.mesh, code=True)  # user code's mistakes before anything starts
    if stale := local.claim():  # refuses while this folder's mesh runs
        _event(stale)
    # a supervisor's stop or a closed terminal is Ctrl-C: every service stops cleanly
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with broker_session() as broker:
        memory = " (data in memory only: gone when it stops)" if broker.kind == "embedded" else ""
        output.say(f"broker ({broker.kind}): ", (broker.bootstrap, "cyan"), memory)
        output.say(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
        if settings.topic_prefix != Settings.model_fields["topic_prefix"].default:
            output.say(f"export CHOREO_TOPIC_PREFIX={settings.topic_prefix}")
        output.say(f"(or run commands from this folder: they find it in {local.UP_FILE})")
        with (
            start_mesh(
                spec,
                Path(args.mesh),
                broker.bootstrap,
                settings,
                Path(args.log_dir),
                watchdog=not args.no_watchdog,
            ) as group,
            local.announce(broker.bootstrap, Path(args.mesh), settings.topic_prefix),
        ):
            output.show_sheet(_status_sheet(spec, broker.bootstrap, group))
            _event("mesh up; Ctrl-C stops every service")
            supervisor = Supervisor(group)
            try:
                while True:
                    time.sleep(0.5)
                    for event in supervisor.check():
                        _event(event)
            except KeyboardInterrupt:
                _event("stopping every service…")
        output.show_sheet(_status_sheet(spec, broker.bootstrap, group))
    _event("all services stopped")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.cli.traces import show_result
    from choreo.kafka.broker import broker_session
    from choreo.local.launch import start_mesh
    from choreo.observe import terminal as output

    mesh_path = Path(args.mesh)
    spec = load_mesh(mesh_path)
    served = any(tier.server is not None for tier in spec.models.values())
    model = "a real model on this machine, llama.cpp" if served else "scripted model"
    output.say(("Choreo Mesh demo", "bold"), f": {spec.name} ({model}, offline)")
    with broker_session() as broker:
        output.say(f"broker ({broker.kind}) at {broker.bootstrap}")
        with output.err.status("starting keeper and agents…"):
            group = start_mesh(
                spec, mesh_path, broker.bootstrap, settings, Path(args.log_dir), watchdog=False
            )

        async def demo(client: Client) -> int:
            trace_id = await client.submit(args.text)
            output.say("task submitted as trace ", (trace_id, "cyan"), f": {args.text}")
            return await show_result(client, trace_id, args.timeout, tree=True, group=group)

        with group:
            return with_client(settings, demo, broker.bootstrap)


def register(add: AddCommand) -> None:
    p = add(
        "broker",
        cmd_broker,
        "start the embedded Kafka-compatible broker (data in memory "
        "only), or Apache Kafka with --kafka",
    )
    p.add_argument(
        "--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    p.add_argument(
        "--kafka",
        action="store_true",
        help="Apache Kafka (KRaft) from its jars; needs Java 17",
    )
    p.add_argument(
        "--brokers",
        type=int,
        default=1,
        metavar="N",
        help="with --kafka: a cluster of N nodes, each broker and controller (default: 1)",
    )
    p.add_argument(
        "--log",
        default=None,
        metavar="FILE",
        help="append the broker's own log to this file (default: none; a cluster's node N "
        "to FILE.nodeN)",
    )

    p = add("topics", cmd_topics, "create every topic a mesh needs")
    p.add_argument("--mesh", required=True, help="the mesh spec (YAML)")

    p = add("schema", cmd_schema, "export the wire contract (JSON Schema + AsyncAPI)")
    p.add_argument("action", choices=["export"], help="export")
    p.add_argument(
        "--out",
        default=None,
        metavar="FOLDER",
        help="folder to write, or with --check to compare (default: schemas/json "
        "under the current folder)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files differ from the code instead of writing them",
    )

    p = add("model-server", cmd_model_server, "serve a scripted model over the OpenAI API")
    p.add_argument("script", help="the model script (YAML)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=0, help="TCP port (default: 0, a free one, announced on stdout)"
    )

    p = add("local-model", cmd_local_model, "serve a GGUF model with llama.cpp over the OpenAI API")
    p.add_argument("--model", required=True, help="the model name it answers to")
    p.add_argument(
        "--gguf",
        type=Path,
        default=None,
        help="the GGUF file (default: the packaged SmolLM2-135M-Instruct)",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    p.add_argument("--context", type=int, default=4096, help="context tokens (default: 4096)")
    p.add_argument(
        "--chat-format",
        default=None,
        help="llama-cpp-python's chat format (default: the GGUF file's own template)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=0, help="TCP port (default: 0, a free one, announced on stdout)"
    )

    p = add("run", cmd_run, "run one service in the foreground (what a container runs)")
    p.add_argument(
        "service", choices=["keeper", "agent", "watchdog", "sandbox"], help="the service to run"
    )
    p.add_argument(
        "--mesh",
        default=None,
        help="the mesh spec (YAML); required but for the sandbox (default: none)",
    )
    p.add_argument(
        "--agent",
        default=None,
        metavar="NAME",
        help="with agent: the agent to run, as named in the spec (default: none)",
    )
    p.add_argument(
        "--socket",
        default=None,
        help="sandbox: Unix socket path (default: CHOREO_SANDBOX_SOCKET, else "
        f"{SandboxLimits.model_fields['socket'].default}; none when only --port is "
        "given)",
    )
    p.add_argument(
        "--port", type=int, default=None, help="sandbox: TCP port on loopback (default: none)"
    )

    p = add(
        "up",
        cmd_up,
        "start every service of a mesh as its own process; restart any that crashes; refused "
        "while a `choreo up` runs from this folder",
    )
    p.add_argument("mesh", help="the mesh spec (YAML)")
    p.add_argument(
        "--log-dir",
        default=".choreo/logs",
        help="folder for each service's log, NAME.log (default: .choreo/logs)",
    )
    p.add_argument(
        "--no-watchdog", action="store_true", help="leave the watchdog out (default: run it)"
    )

    p = add("demo", cmd_demo, "broker + writer-editor mesh + one task, printed")
    p.add_argument(
        "--mesh",
        default=str(DEMO_MESH),
        help="the mesh spec (default: the bundled writer-editor example)",
    )
    p.add_argument("--text", default=DEMO_TASK, help="the task's input (default: a short brief)")
    p.add_argument(
        "--timeout",
        type=positive,
        default=180.0,
        help="seconds to wait for the result (default: 180)",
    )
    p.add_argument(
        "--log-dir",
        default=".choreo/logs",
        help="folder for each service's log (default: .choreo/logs)",
    )
