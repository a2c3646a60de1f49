"""``choreo console``: a web console for operators of a running mesh (docs/CONSOLE.md).

A Starlette application (choreo.console.app) over choreo.client.Client, behind a token
(choreo.console.auth), served by uvicorn (choreo.console.server); the page is the static files
in ``static/``, shipped in the wheel. It reads and acts through the client alone: every action
it offers is also a ``choreo`` command and a ``Client`` method.
"""
