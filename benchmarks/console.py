"""How fast the web console opens a long trace, and lists traces with many on the broker.

    .venv/bin/python -m benchmarks.console long [--steps 1000]
    .venv/bin/python -m benchmarks.console many [--traces 10000]

``long``: one Python agent appends a short line to an ``append`` field and emits to itself
until its counter reaches ``--steps`` (issue 21's workload, with lines short enough that the
state stays under the broker's record limit), in one process (choreo.testing.Mesh) on the
broker of ``KAFKA_BOOTSTRAP_SERVERS`` or the embedded one. Then the console serves it and
Debian's Chromium (Playwright) opens the trace page: the time from navigation until the
terminal record is drawn (the first hundred steps' rows are drawn with it, the rest follow in
slices), until every step's row is drawn, and the time the API's JSON takes alone, are
printed (median and worst).

``many``: the same agent finishing at once, ``--traces`` tasks sent; then how long the
console's first listing takes (reading the state and results topics whole), and, from the
list it keeps, the time to answer a page of the traces list (no filter; by status; by
text), measured as the browser sees it over HTTP, and the browser's time to draw the page
and to apply a text filter.

``screenshots DIR``: the pages of the writer-editor example (a trace completed, one halted
by its budget) saved as PNG files, for docs/CONSOLE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from choreo.client import Client
from choreo.console.auth import new_token
from choreo.console.server import ConsoleServer, address, bind
from choreo.testing import Mesh
from choreo.testing.broker import shared_broker

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

HANDLER = """
import choreo


@choreo.agent(timeout_s=30)
async def loop(step: choreo.Step) -> choreo.Result:
    count = int(step.state.get("count") or 0) + 1
    line = f"step {count}: appended a short line"
    if count >= int(step.state.get("steps") or 1):
        return step.finish(output=f"{count} steps", writes={"count": count, "log": line})
    return step.emit("loop.step", {"count": count, "log": line}, text=line)
"""


def mesh_file(folder: Path, steps: int) -> Path:
    """The looping mesh, its budget room for ``steps`` steps."""
    (folder / "looping.py").write_text(HANDLER)
    spec = folder / "mesh.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""
            name: looping
            entry: [loop.step]
            state:
              count: {{reducer: replace, default: 0}}
              steps: {{reducer: replace, default: {steps}}}
              log: {{reducer: append}}
            models:
              none: {{model: none, base_url: "http://127.0.0.1:9/v1"}}
            budgets: {{max_hops: {steps + 5}, max_seconds: 7200}}
            agents:
              - name: looper
                kind: python
                handler: looping:loop
                subscribe: [loop.step]
                emit: [loop.step]
            """
        )
    )
    return spec


async def timed(work: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    """Milliseconds each of ``runs`` runs of ``work`` took."""
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        found.append((time.perf_counter() - started) * 1000)
    return found


def show(name: str, ms: list[float]) -> None:
    print(f"{name}: median {statistics.median(ms):.0f} ms, worst {max(ms):.0f} ms ({len(ms)} runs)")


async def with_console(mesh: Mesh, work: Callable[[str, str, Any], Awaitable[None]]) -> None:
    """Run ``work(url, token, browser)`` with a console of ``mesh`` and a headless Chromium."""
    from playwright.async_api import async_playwright

    token = new_token()
    sock = bind()
    async with Client(mesh.bootstrap, settings=mesh.settings) as client:
        server = ConsoleServer(client, mesh.spec, token, sock)
        serving = asyncio.create_task(server.serve())
        await server.started(serving)
        try:
            async with async_playwright() as playwright:
                chromium = shutil.which("chromium")
                browser = await playwright.chromium.launch(
                    executable_path=chromium, args=CHROMIUM_ARGS
                )
                await work(address(sock, token), token, browser)
                await browser.close()
        finally:
            server.stop()
            await serving


async def long_trace(steps: int) -> None:
    bootstrap = shared_broker().bootstrap
    with tempfile.TemporaryDirectory() as folder:
        async with Mesh(mesh_file(Path(folder), steps), bootstrap) as mesh:
            started = time.perf_counter()
            trace_id = await mesh.client.submit("loop")
            result = await mesh.client.wait(trace_id, timeout_s=3600)
            print(
                f"{result.usage.hops}-step trace {result.status} in "
                f"{time.perf_counter() - started:.1f} s"
            )

            async def work(url: str, token: str, browser: Any) -> None:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                base = url.split("?", 1)[0]

                async def open_page() -> None:
                    await page.goto("about:blank")
                    await page.goto(f"{url}#/trace/{trace_id}")
                    await page.get_by_test_id("terminal").wait_for()

                async def open_all() -> None:
                    await open_page()
                    await page.locator(".waterfall[data-drawn=all]").wait_for(state="attached")

                async def api() -> None:
                    async with httpx.AsyncClient(
                        headers={"Authorization": f"Bearer {token}"}, timeout=120
                    ) as http:
                        (await http.get(f"{base}api/traces/{trace_id}")).raise_for_status()

                show("the first opening (the trace's records read)", await timed(open_page, 1))
                show(
                    f"trace page of {steps} steps, navigation to terminal record drawn, again",
                    await timed(open_page, 5),
                )
                show("again, until every step's row is drawn", await timed(open_all, 5))
                show("its JSON alone, kept from the first opening", await timed(api, 5))

            await with_console(mesh, work)


async def screenshots(folder: Path) -> None:
    """The pages of the writer-editor example, one trace completed and one halted by its
    budget (an open escalation), saved as PNG files in ``folder``."""
    from choreo.local.examples import example_mesh
    from choreo.schemas import Budget

    bootstrap = shared_broker().bootstrap
    async with Mesh(example_mesh("writer-editor"), bootstrap) as mesh:
        done = await mesh.client.submit("Write about event sourcing.")
        await mesh.client.wait(done, timeout_s=120)
        halted = await mesh.client.submit("Write about event sourcing.", budget=Budget(max_hops=3))
        await mesh.client.wait(halted, timeout_s=120)

        async def work(url: str, token: str, browser: Any) -> None:
            page = await browser.new_page(viewport={"width": 1300, "height": 760})
            for name, route, ready in [
                ("traces", "/traces", "shown"),
                ("trace", f"/trace/{done}", "terminal"),
                ("state", f"/trace/{done}/state?at=4&against=2", "fields"),
                ("budget", f"/trace/{done}/budget", "burn-steps"),
                ("escalations", "/escalations", "guidance"),
                ("mesh", "/mesh", "graph"),
            ]:
                await page.goto(f"{url}#{route}")
                await page.get_by_test_id(ready).first.wait_for()
                await page.screenshot(path=str(folder / f"{name}.png"))

        await with_console(mesh, work)


async def many_traces(count: int) -> None:
    bootstrap = shared_broker().bootstrap
    with tempfile.TemporaryDirectory() as folder:
        async with Mesh(mesh_file(Path(folder), 1), bootstrap) as mesh:
            started = time.perf_counter()
            sent: list[str] = []
            for first in range(0, count, 500):  # in flight together: the producer batches
                sent += await asyncio.gather(
                    *(
                        mesh.client.submit(f"task {n}")
                        for n in range(first, min(count, first + 500))
                    )
                )
            print(f"{count} tasks sent in {time.perf_counter() - started:.1f} s")
            await mesh.client.wait(sent[-1], timeout_s=3600)
            for _ in range(3600):  # results land out of order: count them all
                if (await mesh.client.traces(status="completed", limit=1)).total >= count:
                    break
                await asyncio.sleep(1)
            print(f"{count} traces completed after {time.perf_counter() - started:.1f} s")

            async def work(url: str, token: str, browser: Any) -> None:
                base = url.split("?", 1)[0]
                async with httpx.AsyncClient(
                    headers={"Authorization": f"Bearer {token}"}, timeout=600
                ) as http:

                    async def listing(query: str) -> None:
                        (await http.get(f"{base}api/traces?{query}")).raise_for_status()

                    show(
                        "first listing (reads the topics whole)",
                        await timed(lambda: listing("limit=50"), 1),
                    )
                    show("a page, no filter", await timed(lambda: listing("limit=50"), 20))
                    show(
                        "a page, by status",
                        await timed(lambda: listing("status=completed&offset=5000"), 20),
                    )
                    show("a page, by text", await timed(lambda: listing("text=abc"), 20))
                page = await browser.new_page(viewport={"width": 1400, "height": 900})

                async def open_page() -> None:
                    await page.goto("about:blank")
                    await page.goto(f"{url}#/traces")
                    await page.get_by_test_id("shown").wait_for()

                async def filtered() -> None:
                    await page.goto(f"{url}#/traces")
                    await page.get_by_test_id("shown").wait_for()
                    await page.get_by_test_id("filter-text").fill(sent[0][:8])
                    await page.locator(f"tr[data-trace='{sent[0]}']").wait_for()
                    await page.wait_for_function(
                        "document.querySelectorAll('tr[data-trace]').length === 1"
                    )

                show("traces page drawn in the browser", await timed(open_page, 5))
                show(
                    "text filter typed to one row drawn (300 ms of it the typing pause)",
                    await timed(filtered, 5),
                )

            await with_console(mesh, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    long = sub.add_parser("long", help="open a trace of many steps")
    long.add_argument("--steps", type=int, default=1000)
    many = sub.add_parser("many", help="list traces with many on the broker")
    many.add_argument("--traces", type=int, default=10_000)
    shots = sub.add_parser("screenshots", help="save the pages of the writer-editor example")
    shots.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.what == "long":
        asyncio.run(long_trace(args.steps))
    elif args.what == "many":
        asyncio.run(many_traces(args.traces))
    else:
        args.folder.mkdir(parents=True, exist_ok=True)
        asyncio.run(screenshots(args.folder))


if __name__ == "__main__":
    main()
