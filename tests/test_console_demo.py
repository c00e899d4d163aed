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
from pathlib import Path

import psutil
import pytest

from symphony.console.tui_main import build_parser, main
from tests.helpers import ROOT, kill_process_group, wait_until
from tests.test_packaging import installed, wheel  # noqa: F401 - fixtures: the wheel in a fresh venv


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

    def hang_up(self) -> None:
        """The terminal goes away (its writes now fail), and the console gets SIGHUP."""
        os.close(self.master)
        self.master = -1
        self.process.send_signal(signal.SIGHUP)

    def close(self) -> None:
        kill_process_group(self.process)
        if self.master >= 0:
            os.close(self.master)


def demo_folder(server: psutil.Process) -> Path:
    """The demo's temporary folder: the embedded server runs in its redis/ subfolder."""
    for part in server.cmdline():
        if "symphony-demo-" in part:
            return Path(part.split("symphony-demo-", 1)[0] + "symphony-demo-" +
                        part.split("symphony-demo-", 1)[1].split(os.sep, 1)[0])
    cwd = Path(server.cwd())
    return next(p for p in (cwd, *cwd.parents) if p.name.startswith("symphony-demo-"))


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


@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGHUP"])
@pytest.mark.slow
def test_demo_starts_everything_and_quitting_stops_everything(how):
    """q, SIGTERM, and the terminal closing (a dropped SSH, tmux kill-session: the terminal goes
    away and the console gets SIGHUP) all stop every process the demo started and remove its
    temporary folder."""
    term = Terminal("--demo")
    started: list[psutil.Process] = []
    try:
        # an embedded Redis, two supervisors (one per pool) and their worker processes (2 each)
        def everything_up():
            procs = [p for p in descendants(term.process.pid) if alive(p)]
            names = " ".join(cmdline(p) for p in procs)
            workers = [p for p in procs if "-m symphony.workers" in cmdline(p)]  # forked children have it too
            supervisors = [p for p in workers if p.ppid() not in {w.pid for w in workers}]
            processes = [p for p in procs if p.ppid() in {s.pid for s in supervisors}
                         and "resource_tracker" not in cmdline(p)]  # the supervisors' worker processes
            server = "redis-server" in names or "valkey" in names
            return server and len(supervisors) == 2 and len(processes) >= 4 and procs

        started = wait_until(everything_up, timeout=60, message="the demo's server and workers")
        server = next(p for p in started if "redis-server" in cmdline(p) or "valkey" in cmdline(p))
        workdir = demo_folder(server)
        assert workdir.is_dir()
        wait_until(lambda: b"connected" in term.output and b"rvm:block7" in term.output, timeout=60,
                   message="the console to draw live data")
        if how == "q":
            term.type(b"q")
        elif how == "SIGTERM":
            term.process.send_signal(signal.SIGTERM)
        else:
            term.hang_up()
        code = term.process.wait(timeout=60)
        assert code == 0 or (how == "SIGHUP" and code == 128 + signal.SIGHUP), code
        wait_until(lambda: not any(alive(p) for p in started), timeout=30,
                   message="every process the demo started to stop: "
                           + ", ".join(f"{p.pid}" for p in started if alive(p)))
        assert not workdir.exists()  # and its temporary folder is gone
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


@pytest.mark.slow
def test_keyboard_repair_and_initialize_work_in_the_demo(tmp_path):
    """In the demo, r plans from the session the demo registered (nothing to redo once every item
    is done) and i verifies the demo's own session file without a clash with itself."""
    import asyncio

    from symphony.console.app import SymphonyApp
    from symphony.console.backend import Backend
    from symphony.console.demo import Demo
    from symphony.console.screens import InitializeScreen, RepairScreen
    from symphony.engine import Engine
    from tests.console_helpers import RecordingApp, text_of, until

    demo = Demo(processes=1, seconds=0.02)
    try:
        demo.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no Redis server for the demo: {exc}")
    try:
        with Engine(demo.config) as engine:
            wait_until(lambda: (lambda s: s.completed + s.failed + s.timed_out >= s.items)(
                engine.snapshot(events=0).sessions[0]), timeout=120, message="the demo's session to finish")
        app = RecordingApp(Backend(Engine(demo.config), tasks_dir=demo.tasks_dir), refresh=0.2,
                           export_dir=tmp_path)

        async def main() -> None:
            async with app.run_test(size=(160, 48)) as pilot:
                await until(pilot, lambda: app.queues.row_count == 4, message="the demo's queues")
                await pilot.press("r")
                screen = await until(pilot, lambda: isinstance(app.screen, RepairScreen) and app.screen,
                                     message="the repair plan")
                plan = screen.plan
                assert plan.total == 24 and plan.to_enqueue == 0 and plan.complete + plan.failed == 24
                await pilot.press("enter")  # nothing to repair: Enter closes
                await until(pilot, lambda: not isinstance(app.screen, RepairScreen), message="the plan to close")
                assert not any("different definition" in n for n in app.notes)
                await pilot.press("i")
                init = await until(pilot, lambda: isinstance(app.screen, InitializeScreen) and app.screen,
                                   message="the initialize screen")
                await pilot.press("v")
                await until(pilot, lambda: init.report is not None, message="the verification report")
                report = text_of(init.query_one("#init-report"))
                assert "block7.yaml" in report and str(demo.tasks_dir) in report
                assert not any("different definition" in p.message or "clash" in p.message
                               for p in init.report.problems), init.report.problems

        try:
            asyncio.run(main())
        finally:
            app.backend.close()
    finally:
        demo.stop()
    assert not demo.workdir.exists()


@pytest.mark.slow
def test_screenshot_of_the_demo_waits_for_live_data(tmp_path):
    """--screenshot fires only once a worker exists and something completed (or gives up at a deadline)."""
    import asyncio
    import dataclasses

    from symphony.console.app import SymphonyApp
    from symphony.console.backend import PollResult
    from tests.console_fakes import DISPLAY, T0, snapshot

    class Warming:
        display = DISPLAY
        polls = 0

        def poll(self, page=None):  # the first polls: no worker yet, nothing done
            self.polls += 1
            snap = snapshot(T0 + self.polls)
            if self.polls < 6:
                snap = dataclasses.replace(snap, workers=(), queues=tuple(dataclasses.replace(q, completed=0)
                                                                          for q in snap.queues))
            return PollResult(snap)

        def close(self):
            pass

    target = tmp_path / "shot.svg"
    app = SymphonyApp(Warming(), refresh=0.05, screenshot=(str(target), 0.01), screenshot_live=True)

    async def main() -> None:
        async with app.run_test(size=(160, 48)):
            while app.is_running:
                await asyncio.sleep(0.05)

    asyncio.run(main())
    assert app.screenshot_saved and app.backend.polls >= 6
    assert "win-vm0-0-a1b2c3" in target.read_text()


@pytest.mark.slow
def test_the_demo_runs_from_an_installed_wheel(installed):
    """From a non-editable install (no checkout, no tasks/ in the working folder) the samples come
    from the package: `symphony demo` runs the sample session to its end."""
    from tests.test_packaging import _run

    code = ("from symphony.console.demo import samples, sample_text; print(samples());"
            "print(sample_text('block7.yaml').count('row-0'))")
    found = _run(installed, str(installed / "bin" / "python"), "-c", code)
    assert found.returncode == 0, found.stderr
    assert str(installed) in found.stdout and found.stdout.split()[-1] == "24"
    demo = _run(installed, str(installed / "bin" / "symphony"), "demo", "--seconds", "0.02", "--processes", "1")
    if "redis-server" in demo.stderr and "not found" in demo.stderr.lower():
        pytest.skip("no Redis server binary for the demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "every item went through every stage" in demo.stdout
