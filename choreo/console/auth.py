"""The console's access token: every request must carry it, or is refused.

The token rides in a ``token`` query parameter (the printed address), an ``Authorization:
Bearer TOKEN`` header (the page's own API calls, scripts), or a cookie: an answer to a request
whose query carried the token sets it (``HttpOnly``, ``SameSite=Strict``), so the page's own
files and its event stream, which a browser fetches without headers of ours, carry it too and
no other site's page can. It is compared in constant time.
There is no way to switch it off: a console that can resume traces and requeue records is
never open to whoever reaches the port.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Headers on every answer: no page of the console loads anything but its own files, runs no
#: inline script, is framed by no other site, and never leaks its address (with the token)
#: as a referrer.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]
#: The cookie that carries the token once the printed address was opened.
COOKIE = "choreo_console"


def new_token() -> str:
    """A fresh random token: 32 bytes from the OS's generator, URL-safe text."""
    return secrets.token_urlsafe(32)


class TokenGuard:
    """ASGI middleware: answers 401 to an HTTP request without ``token``, passes the rest to
    ``app`` with SECURITY_HEADERS added to the response."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        carried = self._carried(scope)
        if carried is None:
            await _refuse(send)
            return
        added = list(SECURITY_HEADERS)
        if carried == "query":
            cookie = f"{COOKIE}={self._token.decode()}; HttpOnly; SameSite=Strict; Path=/"
            added.append((b"set-cookie", cookie.encode()))

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self._app(scope, receive, secured)

    def _carried(self, scope: Scope) -> str | None:
        """Where the request carried the right token (``query``, ``header``, ``cookie``),
        or None."""
        given: list[tuple[str, bytes]] = []
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                given.append(("header", value.removeprefix(b"Bearer ").strip()))
            elif name == b"cookie":
                morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
                if morsel is not None:
                    given.append(("cookie", morsel.value.encode()))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given += [("query", v.encode()) for v in query.get("token", [])]
        for where, value in given:
            if hmac.compare_digest(value, self._token):
                return where
        return None


async def _refuse(send: Send) -> None:
    body = b"a console token is required: open the address `choreo console` printed\n"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"www-authenticate", b'Bearer realm="choreo console"'),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
