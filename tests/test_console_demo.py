"""``symphony-tui --demo`` in a real terminal (a pseudo-terminal): it starts an embedded Redis,
demo workers for every pool and the sample session, draws a live screen, and quitting (the q key,
or SIGTERM) stops every process it started. Also: ``--help``, and clear errors."""
from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading

import psutil
import pytest

from symphony.console.tui_main import build_parser, main
from tests.helpers import ROOT, kill_process_group, wait_until


class Terminal:
    """A process running in a pseudo-terminal of 160x48, its output collected."""

    def __init__(self, *args: str):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SYMPHONY_"))}
        env.update(TERM="xterm-256color", COLUMNS="160", LINES="48", PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen([sys.executable, "-m", "symphony.console.tui_main", *args], stdin=slave,
                                        stdout=slave, stderr=slave, cwd=str(ROOT), env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        kill_process_group(self.process)
        os.close(self.master)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
@pytest.mark.slow
def test_demo_starts_everything_and_quitting_stops_everything(how):
    term = Terminal("--demo")
    started: list[psutil.Process] = []
    try:
        # an embedded Redis, two supervisors (one per pool) and their worker processes (2 each)
        def everything_up():
            procs = [p for p in descendants(term.process.pid) if alive(p)]
            names = " ".join(cmdline(p) for p in procs)
            supervisors = [p for p in procs if "-m symphony.workers" in cmdline(p)]
            processes = [p for p in procs if "spawn_main" in cmdline(p)]  # the supervisors' worker processes
            server = "redis-server" in names or "valkey" in names
            return server and len(supervisors) == 2 and len(processes) >= 4 and procs

        started = wait_until(everything_up, timeout=60, message="the demo's server and workers")
        wait_until(lambda: b"connected" in term.output and b"rvm:block7" in term.output, timeout=60,
                   message="the console to draw live data")
        if how == "q":
            term.type(b"q")
        else:
            term.process.send_signal(signal.SIGTERM)
        assert term.process.wait(timeout=60) == 0
        wait_until(lambda: not any(alive(p) for p in started), timeout=30,
                   message="every process the demo started to stop: "
                           + ", ".join(f"{p.pid}" for p in started if alive(p)))
    finally:
        # whatever happened, leave nothing behind: the demo's children live in their own
        # sessions, so killing the console's process group alone would not reach them
        leftovers = {p.pid: p for p in [*started, *descendants(term.process.pid)]}
        term.close()
        for proc in leftovers.values():
            if alive(proc):
                proc.kill()


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--demo", "--refresh SECONDS", "--tasks DIR", "--redis URL", "--redis-password-file FILE",
                   "--export-dir DIR"):
        assert option in text
    assert "usage: symphony-tui" in text


def test_bad_arguments_are_clear_errors(capsys, tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--refresh", "0"])
    assert "must be greater than 0" in capsys.readouterr().err
    assert main(["--redis", "http://nope"]) == 2
    assert "redis://" in capsys.readouterr().err
    assert main(["--redis-password-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the Redis password file" in capsys.readouterr().err


def test_entry_point_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "symphony-tui")
    assert os.path.exists(exe)
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--demo" in out.stdout


def test_screenshot_mode_saves_what_the_app_draws(redis_url, tmp_path, capsys):
    target = tmp_path / "shot.svg"
    assert main(["--redis", redis_url, "--screenshot", str(target), "--screenshot-after", "0.3"]) == 0
    svg = target.read_text()
    assert svg.startswith("<svg") and "Symphony" in svg and "connected" in svg
    assert f"screenshot saved to {target}" in capsys.readouterr().err


def test_readme_starts_with_the_console_demo_and_shows_its_screenshot():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.strip().splitlines()[-1] == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && symphony-tui --demo")
    assert "](docs/console.svg)" in readme
    svg = (ROOT / "docs" / "console.svg").read_text()
    # saved by the app (Textual's SVG export of the main screen), with the demo's data in it
    assert svg.startswith("<svg") and "terminal-" in svg
    for text in ("Queues", "Workers", "Scale", "Activity", "connected"):
        assert text in svg, text


def test_azure_option_without_configuration_is_a_clear_error(redis_url, capsys, monkeypatch):
    for var in ("SYMPHONY_AZURE_SUBSCRIPTION", "AZURE_SUBSCRIPTION_ID", "SYMPHONY_AZURE_RESOURCE_GROUP",
                "SYMPHONY_AZURE_SCALE_SETS"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--redis", redis_url, "--azure"]) == 2
    assert "not configured" in capsys.readouterr().err
