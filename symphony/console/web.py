"""``symphony-tui --web``: the same console in a browser, served by textual-serve.

Each browser tab gets its own console process (``symphony-tui`` with Textual's web driver),
started by the server with the options given here; the Redis password never appears on its
command line (it travels as the file name, or in the child's environment). The server binds
to loopback by default. Another address is refused unless an access token is configured: the
console can cancel sessions and enqueue work, so anyone who reaches the page could. For a team,
keep the loopback default and put an authenticating reverse proxy in front (docs/web-console.md),
and run the console as the read-only Redis user when viewers must change nothing.

This module has no optional imports: the server itself (textual-serve, aiohttp) is in
``webserve.py``, loaded only when ``--web`` is given.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from symphony.engine import ConfigError, RedisConfig, SharedOptions, register_secret

DEFAULT_PORT = 8000
DEFAULT_BIND = "127.0.0.1"
TOKEN_VAR = "SYMPHONY_WEB_TOKEN"
TOKEN_MIN = 16  # characters
MAX_SESSIONS = 8  # console processes at once (one per browser tab)
EXTRA_HINT = "pip install 'redis-symphony[web]'"


def add_web_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("in a browser (--web)")
    g.add_argument("--web", action="store_true",
                   help="serve the console to web browsers (textual-serve) instead of this terminal; each browser "
                        "tab gets its own console process (docs/web-console.md)")
    g.add_argument("--bind", default=DEFAULT_BIND, metavar="ADDRESS",
                   help="with --web: the address to listen on (default %(default)s, this machine only; another "
                        "address needs --web-token-file)")
    g.add_argument("--port", type=int, default=DEFAULT_PORT, help="with --web: the TCP port (default %(default)s)")
    g.add_argument("--web-token-file", metavar="FILE",
                   help=f"with --web: the access token (at least {TOKEN_MIN} characters) a browser must bring, once, "
                        f"as ?token=... (default: ${TOKEN_VAR}); required to listen beyond loopback")
    g.add_argument("--public-url", metavar="URL",
                   help="with --web: the address browsers use, when it differs from the one they connect to "
                        "(behind a reverse proxy, e.g. https://console.example.org)")
    g.add_argument("--web-max-sessions", type=int, default=MAX_SESSIONS, metavar="N",
                   help="with --web: browser tabs (console processes) open at once (default %(default)s)")


@dataclass(frozen=True)
class WebOptions:
    bind: str
    port: int
    token: str | None
    public_url: str | None
    max_sessions: int


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def read_token(path: str | None, env: Mapping[str, str]) -> str | None:
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the access token file {path}: {exc.strerror or exc}") from None
        where = f"the access token file {path}"
    else:
        token = env.get(TOKEN_VAR, "").strip()
        where = f"${TOKEN_VAR}"
    if not token:
        if path:
            raise ConfigError(f"{where} is empty")
        return None
    if len(token) < TOKEN_MIN or any(ch.isspace() for ch in token):
        raise ConfigError(f"{where}: the token must be at least {TOKEN_MIN} characters, without spaces "
                          "(e.g. python -c \"import secrets; print(secrets.token_urlsafe(24))\")")
    register_secret(token)
    return token


def web_options(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> WebOptions:
    """The ``--web`` options, checked: a clear ``ConfigError`` and nothing served otherwise."""
    env = os.environ if env is None else env
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: not a TCP port (1-65535)")
    if args.web_max_sessions < 1:
        raise ConfigError("--web-max-sessions must be at least 1")
    if getattr(args, "screenshot", None):
        raise ConfigError("--web and --screenshot do not go together")
    token = read_token(args.web_token_file, env)
    if not is_loopback(args.bind) and token is None:
        raise ConfigError(
            f"refusing to serve the console on {args.bind} without an access token: whoever reaches it could "
            f"cancel sessions and enqueue work. Give a token with --web-token-file FILE (or ${TOKEN_VAR}), "
            "or keep the default --bind 127.0.0.1 and put an authenticating reverse proxy in front "
            "(docs/web-console.md)")
    public = args.public_url
    if public:
        parts = urlsplit(public)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--public-url {public!r}: expected http://HOST[:PORT] or https://HOST[:PORT]")
        public = public.rstrip("/")
    return WebOptions(bind=args.bind, port=args.port, token=token, public_url=public,
                      max_sessions=args.web_max_sessions)


def console_command(*, refresh: float, tasks_dir: str, export_dir: str, key_file: str | None,
                    extra: Sequence[str] = ()) -> str:
    """The shell command textual-serve runs for each browser tab: this console, on this Python,
    with no secret in it."""
    argv = [sys.executable, "-m", "symphony.console.tui_main", "--refresh", f"{refresh:g}",
            "--tasks", os.path.abspath(tasks_dir), "--export-dir", os.path.abspath(export_dir), *extra]
    if key_file:
        argv += ["--encryption-key-file", os.path.abspath(key_file)]
    return shlex.join(argv)


def console_environment(config: RedisConfig, password_file: str | None) -> dict[str, str]:
    """What the consoles' environment needs to reach Redis as this process does: the URL without
    its password, and the password's file (or, when it came from the URL or the environment, the
    password itself, in the children's environment only)."""
    parts = urlsplit(config.url)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("password="))
    env = {"SYMPHONY_REDIS_URL": urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))}
    if password_file:
        env["SYMPHONY_REDIS_PASSWORD_FILE"] = os.path.abspath(password_file)
    elif config.password:
        env["REDIS_PASSWORD"] = config.password
    if config.ca_file:
        env["SYMPHONY_REDIS_CA_FILE"] = os.path.abspath(config.ca_file)
    return env


def serve(options: WebOptions, command: str, environment: Mapping[str, str], *, say) -> int:
    """Serve until Ctrl-C or SIGTERM; 0 then."""
    try:
        from .webserve import WebConsole
    except ImportError as exc:
        raise ConfigError(f"symphony-tui --web needs textual-serve ({exc.name or exc} is missing): "
                          f"{EXTRA_HINT}") from None
    os.environ.update(environment)  # textual-serve starts each console with this process's environment
    server = WebConsole(command, options, say=say)
    return server.run()


def say_policy(config: RedisConfig) -> None:
    """Redis' eviction policy, said once at start (WARNING) when it can delete Symphony's keys: the
    server holds no connection of its own (each browser tab's console says it in its header, and
    again after a reconnect), so there is no reconnect of its own to say it after."""
    import logging

    from symphony.engine import Engine, PolicyNotice

    try:
        engine = Engine(config, socket_timeout=5.0)
    except Exception:  # noqa: BLE001 - each console reports an unusable Redis itself
        return
    try:
        PolicyNotice(logging.getLogger("symphony.web"), "the web console's server").check(engine)
    finally:
        engine.close()


def run(args: argparse.Namespace, options: SharedOptions, say) -> int:
    """``symphony-tui --web``: check the options, start the demo if asked, serve until stopped.
    The server is no Textual app: its log goes to stderr (``--log-format json``: JSON lines, what
    it reports included)."""
    from .servicelog import service_log

    web = web_options(args)
    reported = service_log(args, "symphony-web", "symphony.web")
    if getattr(args, "log_format", "text") == "json":
        say = reported
    if args.azure:
        raise ConfigError("--web and --azure do not go together: run 'symphony metrics collect' beside the web "
                          "console (every browser tab would otherwise start a collector)")
    config, password_file, tasks_dir = options.redis, getattr(args, "redis_password_file", None), args.tasks
    demo = None
    try:
        if args.demo:
            from .demo import Demo

            say("symphony-tui: starting the demo (embedded Redis, workers, the sample session)…")
            demo = Demo(options=options, processes=args.processes)
            demo.start()
            config, password_file, tasks_dir = demo.config, None, str(demo.tasks_dir)
        command = console_command(refresh=args.refresh, tasks_dir=tasks_dir, export_dir=args.export_dir,
                                  key_file=options.key_file,
                                  extra=("--log-level", options.log_level, "--log-format", options.log_format))
        say_policy(config)
        return serve(web, command, console_environment(config, password_file), say=say)
    finally:
        if demo is not None:
            say("symphony-tui: stopping the demo…")
            demo.stop()
