"""The web server of ``symphony-tui --web``: textual-serve, with Symphony's guards.

* **Access token** (when configured): a browser brings it once as ``/?token=...``; the server
  answers with a cookie (HttpOnly, SameSite=Strict) and sends the browser on to the same page
  without the token in its address. Every other request needs the cookie (or an
  ``Authorization: Bearer`` header); compared in constant time.
* **Same origin for the console's socket**: a browser that opens ``/ws`` from another site's
  page (which any page may try: WebSockets are not bound by CORS) is refused, so a site you visit
  cannot drive a console on your machine.
* **A bound on console processes**: each browser tab runs one; beyond ``--web-max-sessions``
  the page is refused with a clear message.
* **Addresses from the request**: the page's socket address follows the address the browser
  used (or ``--public-url``), so binding to 0.0.0.0 works from other machines.
"""
from __future__ import annotations

import hmac
import logging
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server, to_int

from symphony.engine import ConfigError

from .web import WebOptions

log = logging.getLogger("symphony.web")
COOKIE = "symphony_console"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class WebConsole(Server):
    def __init__(self, command: str, options: WebOptions, *, say: Callable[[str], None]):
        super().__init__(command, host=options.bind, port=options.port, title="Symphony",
                         public_url=options.public_url)
        self.options = options
        self.say = say
        self.open_sessions = 0

    def initialize_logging(self) -> None:
        """The process's logging is configured already (``--log-level``, ``--log-format``)."""

    def run(self) -> int:
        try:
            self.serve()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.options.bind}:{self.options.port}: "
                              f"{exc.strerror or exc}") from None
        return 0

    async def on_startup(self, app: web.Application) -> None:
        where = self.options.public_url or f"http://{self.options.bind}:{self.options.port}"
        how = " (bring ?token=... once)" if self.options.token else ""
        self.say(f"symphony-tui: serving the console on {where}{how}; one console process per browser tab, at "
                 f"most {self.options.max_sessions}; Ctrl-C stops")

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    # --- the guards -----------------------------------------------------------------------------
    def _token_ok(self, given: str | None) -> bool:
        token = self.options.token
        return bool(given) and token is not None and hmac.compare_digest(given.encode(), token.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable) -> Any:
        if self.options.token is not None:
            given = request.query.get("token")
            if given is not None:
                if not self._token_ok(given):
                    raise web.HTTPUnauthorized(text="symphony-tui: wrong access token\n")
                rest = {k: v for k, v in request.query.items() if k != "token"}
                target = request.path + (f"?{urlencode(rest)}" if rest else "")
                response = web.HTTPSeeOther(target)
                response.set_cookie(COOKIE, given, httponly=True, samesite="Strict",
                                    secure=request.secure or _origin(self.public_url).startswith("https"))
                raise response
            bearer = request.headers.get("Authorization", "")
            bearer = bearer[7:] if bearer.startswith("Bearer ") else None
            if not (self._token_ok(request.cookies.get(COOKIE)) or self._token_ok(bearer)):
                raise web.HTTPUnauthorized(text="symphony-tui: this console needs its access token: open it once "
                                                "as /?token=TOKEN (the token given to --web-token-file)\n")
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            allowed = {_origin(self._base_url(request))}
            if self.options.public_url:
                allowed.add(_origin(self.options.public_url))
            if origin is not None and origin.lower() not in allowed:
                log.warning("refused a console socket from origin %s", origin)
                raise web.HTTPForbidden(text="symphony-tui: the console's socket is for its own page only\n")
        return await handler(request)

    def _base_url(self, request: web.Request) -> str:
        return self.options.public_url or f"{request.scheme}://{request.host}"

    # --- textual-serve's handlers, with the address from the request ---------------------------
    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        base = self._base_url(request)
        router = request.app.router
        socket_base = ("wss:" if base.startswith("https") else "ws:") + base.split(":", 1)[1]
        return {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{socket_base}{router['websocket'].url_for()}",
            "config": {"static": {"url": f"{base}{router['static'].url_for(filename='/')}".rstrip("/") + "/"}},
            "application": {"name": self.title},
        }

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        if self.open_sessions >= self.options.max_sessions:
            raise web.HTTPServiceUnavailable(
                text=f"symphony-tui: {self.open_sessions} consoles are open, the most this server runs "
                     "(--web-max-sessions); close one and reload\n")
        self.open_sessions += 1
        try:
            return await super().handle_websocket(request)
        finally:
            self.open_sessions -= 1
