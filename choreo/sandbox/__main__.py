"""``python -m choreo.sandbox [--socket PATH] [--port N] [--host H]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from choreo.sandbox.server import serve
from choreo.tools.sandbox.limits import SandboxLimits


def main(argv: list[str] | None = None) -> None:
    limits = SandboxLimits()
    parser = argparse.ArgumentParser(
        prog="python -m choreo.sandbox", description="Run generated code in isolation, over HTTP."
    )
    parser.add_argument(
        "--socket",
        type=Path,
        default=None,
        help=f"Unix socket to serve on (default {limits.socket}, unless only --port is given)",
    )
    parser.add_argument("--port", type=int, default=None, help="also or only serve TCP")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address (default loopback)")
    args = parser.parse_args(argv)
    socket_path = args.socket if args.socket or args.port is not None else limits.socket
    serve(socket_path, args.host, args.port, limits)


if __name__ == "__main__":
    main()
