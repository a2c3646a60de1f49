"""``python -m choreo.model_server SCRIPT [--host H] [--port P]``: serve a model script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from choreo.model_server.script import ScriptError
from choreo.model_server.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m choreo.model_server",
        description="Serve a scripted, offline model over the OpenAI-compatible chat API.",
    )
    parser.add_argument("script", type=Path, help="the model script (YAML)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 picks a free one)")
    args = parser.parse_args(argv)
    try:
        serve(args.script, host=args.host, port=args.port)
    except ScriptError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
