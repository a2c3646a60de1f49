"""The console's browser tests: one Chromium and one mesh (with its console) per module.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright's Python API; the
console runs in this process, on an event loop of its own thread, with a client of the mesh
under test (the mesh itself is a choreo.testing mesh, in-process: nothing here is about OS
processes).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

from choreo.client import Client
from choreo.console.auth import new_token
from choreo.console.server import ConsoleServer, address, bind
from tests.conftest import LocalMesh

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


#: Markup, a script, an image whose error handler runs script, markdown and a terminal code:
#: none of it may do anything but show as the characters it is.
HOSTILE = (
    "<script>window.__owned = 'script'</script>"
    "<img src=x onerror=\"window.__owned = 'img'\">"
    " **bold** [link](javascript:alert(1)) \x1b[31mred\x1b[0m"
)


def untouched(page: Any) -> None:
    """Nothing the mesh wrote ran or became markup on ``page``."""
    assert page.evaluate("window.__owned") is None
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0


@dataclass
class RunningConsole:
    """A console serving ``mesh``: ``url`` opens it (with the token), ``base`` has no token."""

    mesh: LocalMesh
    url: str
    base: str
    token: str

    def page_url(self, route: str) -> str:
        """The address of one page: ``route`` is the part after ``#``, e.g. ``/escalations``."""
        return f"{self.url}#{route}"


def _serve(mesh: LocalMesh, token: str, started: Future[str], stop: threading.Event) -> None:
    """Run a console of ``mesh`` until ``stop`` is set; its address goes into ``started``."""

    async def run() -> None:
        sock = bind("127.0.0.1", 0)
        async with Client(mesh.bootstrap, settings=mesh.settings) as client:
            server = ConsoleServer(client, mesh.spec, token, sock)
            serving = asyncio.create_task(server.serve())
            await server.started(serving)
            started.set_result(address(sock, token))
            await asyncio.to_thread(stop.wait)
            server.stop()
            await serving

    try:
        asyncio.run(run())
    except BaseException as exc:
        if not started.done():
            started.set_exception(exc)
        raise


@pytest.fixture(scope="module")
def console_of() -> Iterator[Any]:
    """Start a console of a mesh (at most one a mesh); every one stops when the module ends."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start(mesh: LocalMesh) -> RunningConsole:
        token = new_token()
        started: Future[str] = Future()
        stop = threading.Event()
        thread = threading.Thread(target=_serve, args=(mesh, token, started, stop), daemon=True)
        thread.start()
        running.append((thread, stop))
        url = started.result(timeout=60)
        return RunningConsole(mesh, url, url.split("?", 1)[0], token)

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, for the tests of one module. Not for the whole run:
    Playwright's blocking API runs an event loop in this thread while it is open, and the
    suite's other tests start loops of their own here (``asyncio.run``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own context: no state between tests); fails the test on any error
    the page's script throws."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"the page's script threw: {errors}"
