"""``symphony-tui --web``: the console in a real browser (headless Chromium), and the server's guards."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from symphony.engine import EmbeddedRedis, Engine, load_session, resolve_redis
from symphony.engine.embedded import free_port
from symphony.engine.initialize import initialize_session
from tests.browser import Browser, chromium_binary
from tests.helpers import ProcessRun, sample_tasks, wait_until, worker_env

PASSWORD = "web-console-secret-4242"
TOKEN = "an-access-token-of-32-characters"


class WebServer(ProcessRun):
    """``symphony-tui --web`` as a real process group."""

    def __init__(self, redis_url: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, "-m", "symphony.console.tui_main", "--web", "--port", str(self.port), *args],
                         tmp_path / f"web-{self.port}.log", env=env or worker_env(redis_url), cwd=tmp_path)

    def wait_ready(self) -> None:
        def answers() -> bool:
            assert self.process.poll() is None, f"the web console exited:\n{self.output()}"
            try:
                urllib.request.urlopen(self.url + "/", timeout=5).close()
            except urllib.error.HTTPError:
                return True  # it answers (401 without a token)
            return True

        wait_until(answers, timeout=60, interval=0.1, message="the web console to listen")


def group_command_lines(pgid: int) -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ProcessLookupError):
            continue
    return lines


@pytest.fixture
def secret_redis(tmp_path):
    server = EmbeddedRedis(directory=str(tmp_path / "redis"), password=PASSWORD)
    (tmp_path / "redis").mkdir()
    server.start()
    yield server
    server.close()


@pytest.mark.slow
def test_the_console_in_headless_chromium_shows_the_queues_and_a_key_reaches_it(secret_redis, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    url = f"redis://:{PASSWORD}@127.0.0.1:{secret_redis.port}/0"
    tasks = sample_tasks(tmp_path)
    with Engine(resolve_redis(url)) as engine:
        initialize_session(engine, load_session(tasks / "block7.yaml"))
    web = WebServer(url, tmp_path, "--tasks", str(tasks))
    try:
        web.wait_ready()

        async def drive() -> tuple[str, str, str, list[str]]:
            browser = await Browser(binary, tmp_path).open()
            try:
                await browser.goto(web.url + "/")
                main = await browser.wait_for_text("block7", "rvm", "preprocess", "detection")
                lines = group_command_lines(web.process.pid)  # the server and the tab's console, now
                await browser.click(700, 450)  # focus the terminal, as a person would
                await browser.press("?", "Slash", 191, text="?")
                helped = await browser.wait_for_text("command palette", "this help")
                await browser.press("Escape", "Escape", 27)
                back = await browser.wait_for_text("block7", gone=("command palette",))
                return main, helped, back, lines
            finally:
                await browser.close()

        main, helped, back, lines = asyncio.run(drive())
        assert "rvm" in main and "block7" in main
        assert "command palette" not in main and "command palette" in helped
        assert "command palette" not in back, "Escape reached the app too"
        assert any("symphony.console.tui_main" in line and "--web" not in line for line in lines), lines
        for line in lines:
            assert PASSWORD not in line, "the Redis password is on a command line"
        assert PASSWORD not in web.output()
    finally:
        code = web.stop()
    assert code == 0, web.output()
    wait_until(lambda: not group_command_lines(web.process.pid), timeout=30, message="every console process to end")


def test_the_web_console_refuses_another_address_without_a_token(redis_url, tmp_path):
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "symphony.console.tui_main", "--web", "--bind", "0.0.0.0",
                          "--port", str(port)], cwd=tmp_path, env=worker_env(redis_url), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "refusing to serve the console on 0.0.0.0 without an access token" in out.stderr
    assert "--web-token-file" in out.stderr and "reverse proxy" in out.stderr
    with pytest.raises(OSError):  # nothing listens
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)


@pytest.mark.parametrize("token, message", [("short", "at least 16 characters"), ("", "is empty")])
def test_a_bad_token_file_is_refused_with_its_name(redis_url, tmp_path, token, message):
    path = tmp_path / "token"
    path.write_text(token)
    out = subprocess.run([sys.executable, "-m", "symphony.console.tui_main", "--web", "--bind", "0.0.0.0",
                          "--port", str(free_port()), "--web-token-file", str(path)], cwd=tmp_path,
                         env=worker_env(redis_url), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and str(path) in out.stderr and message in out.stderr


@pytest.mark.slow
def test_with_a_token_every_request_needs_it_and_the_socket_only_its_own_page(redis_url, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    web = WebServer(redis_url, tmp_path, "--bind", "0.0.0.0", "--web-token-file", str(token_file),
                    "--log-format", "json")
    try:
        web.wait_ready()
        for path in ("/", "/ws", "/static/js/textual.js", "/?token=wrong-token-of-enough-length"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(web.url + path, timeout=10)
            assert refused.value.code == 401, path
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(f"{web.url}/?token={TOKEN}&fontsize=14", timeout=10) as page:  # follows the 303
            assert page.url == f"{web.url}/?fontsize=14", "the token leaves the address bar"
            html = page.read().decode()
        assert f'data-session-websocket-url="ws://127.0.0.1:{web.port}/ws"' in html
        cookie = next(c for c in jar if c.name == "symphony_console")
        assert cookie.value == TOKEN and cookie.has_nonstandard_attr("HttpOnly")
        bearer = urllib.request.Request(web.url + "/static/js/textual.js", headers={"Authorization": f"Bearer {TOKEN}"})
        urllib.request.urlopen(bearer, timeout=10).close()
        # a page of another site may open a socket to the console; its Origin gives it away
        foreign = urllib.request.Request(web.url + "/ws", headers={"Origin": "http://evil.example",
                                                                   "Authorization": f"Bearer {TOKEN}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign, timeout=10)
        assert refused.value.code == 403
    finally:
        assert web.stop() == 0, web.output()
    log = [json.loads(line) for line in web.output().splitlines() if line.strip()]  # every line one object
    assert {line["worker"] for line in log} == {"symphony-web"}
    assert any(line["message"].startswith("symphony-tui: serving the console on") for line in log)
    assert any(line["level"] == "WARNING" and "origin http://evil.example" in line["message"] for line in log)
    assert TOKEN not in web.output()


def test_without_the_web_extra_the_error_says_what_to_install(monkeypatch):
    from symphony.console import web
    from symphony.engine import ConfigError

    monkeypatch.setitem(sys.modules, "textual_serve", None)  # as if textual-serve were not installed
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)
    monkeypatch.delitem(sys.modules, "symphony.console.webserve", raising=False)
    options = web.WebOptions(bind="127.0.0.1", port=free_port(), token=None, public_url=None, max_sessions=1)
    with pytest.raises(ConfigError) as missing:
        web.serve(options, "true", {}, say=print)
    assert "pip install 'redis-symphony[web]'" in str(missing.value)
