"""``choreo console``: a web console for the running mesh, and ``choreo traces`` and
``choreo groups``, the lists it shows, on the command line.

The console listens on 127.0.0.1 unless ``--host`` says otherwise, and every request must
carry the token it prints (a fresh random one each start); it reads and acts through
choreo.client.Client only (docs/CONSOLE.md).
"""

from __future__ import annotations

import argparse

from choreo.cli.common import AddCommand, UsageError, bootstrap_of, with_client
from choreo.observe.settings import Settings


def _mesh_path(given: str | None) -> str:
    from choreo.local.announce import running_mesh

    found = given or running_mesh()
    if found is None:
        raise UsageError(
            "no mesh: give --mesh SPEC, or run this command in the folder of a running `choreo up`"
        )
    return found


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.client import Client
    from choreo.console.auth import new_token
    from choreo.console.server import ConsoleServer, address, bind, is_loopback
    from choreo.observe import terminal as output
    from choreo.spec.mesh import load_mesh

    spec = load_mesh(_mesh_path(args.mesh))
    bootstrap = bootstrap_of(settings)
    token = new_token()
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise UsageError(
            f"--host/--port: cannot listen on {args.host}:{args.port}: {exc}"
        ) from None

    async def serve(client: Client) -> int:
        server = ConsoleServer(client, spec, token, sock)
        output.say("console of mesh ", (spec.name, "cyan"), " at ", (address(sock, token), "bold"))
        if not is_loopback(args.host):
            output.say(f"listening on {args.host}: anyone with the address above can act")
        output.say("Ctrl-C stops it")
        await server.serve()
        return 0

    return with_client(settings, serve, bootstrap)


def cmd_traces(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.observe import terminal as output

    page = with_client(
        settings,
        lambda client: client.traces(
            status=args.status,
            agent=args.agent,
            text=args.text,
            offset=args.offset,
            limit=args.limit,
        ),
    )
    if args.json:
        output.show_json({"total": page.total, "offset": page.offset, "traces": page.traces})
        return 0
    from choreo.cli import views

    output.show_sheet(views.traces_sheet(page.traces, page.total, page.offset))
    return 0


def cmd_groups(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.observe import terminal as output

    groups = with_client(settings, lambda client: client.groups(_mesh_path(args.mesh)))
    if args.json:
        output.show_json(groups)
        return 0
    from choreo.cli import views

    output.show_sheet(views.groups_sheet(groups))
    return 0


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def register(add: AddCommand) -> None:
    p = add("console", cmd_console, "serve a web console of the running mesh (token required)")
    p.add_argument(
        "--mesh",
        default=None,
        help="the mesh spec the mesh runs (default: that of this folder's `choreo up`)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); the token "
        "is required on every request wherever it listens",
    )
    p.add_argument(
        "--port", type=_count, default=8470, help="port to listen on, 0 for any (default: 8470)"
    )

    p = add("traces", cmd_traces, "list the traces on the broker, newest first, filtered")
    p.add_argument(
        "--status",
        choices=["running", "completed", "failed", "halted"],
        default=None,
        help="only traces in this status (default: all)",
    )
    p.add_argument(
        "--agent", default=None, help="only traces this agent took a step of (default: any)"
    )
    p.add_argument(
        "--text",
        default=None,
        help="only traces whose id, last agent or reason has this text, in any case (default: any)",
    )
    p.add_argument("--offset", type=_count, default=0, help="traces to skip (default: 0)")
    p.add_argument("--limit", type=_count, default=50, help="most traces to list (default: 50)")
    p.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: off)"
    )

    p = add("groups", cmd_groups, "show each agent's live replicas and consumer lag")
    p.add_argument(
        "--mesh",
        default=None,
        help="the mesh spec the mesh runs (default: that of this folder's `choreo up`)",
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: off)"
    )
