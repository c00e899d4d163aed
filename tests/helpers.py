"""Test helpers: polling with a deadline (never sleeps as synchronisation), workers as real
processes, and small session/pipeline files."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"


class Poll:
    """One wait for a condition: ``ready()`` tries it once, and fails the test at the deadline.
    The waiting between tries is the caller's (a sleep, or letting a Textual app run)."""

    def __init__(self, predicate: Callable[[], Any], timeout: float = 20.0, message: str = "condition",
                 detail: Callable[[], str] = lambda: ""):
        self.predicate, self.timeout, self.message, self.detail = predicate, timeout, message, detail
        self.deadline = time.monotonic() + timeout
        self.value: Any = None
        self.last_exc: BaseException | None = None

    def ready(self) -> bool:
        try:
            self.value = self.predicate()
            if self.value:
                return True
        except Exception as exc:  # noqa: BLE001 - e.g. Redis restarting, a widget not mounted yet
            self.last_exc = exc
        if time.monotonic() >= self.deadline:
            raise AssertionError(f"timed out after {self.timeout}s waiting for {self.message}"
                                 + (f" (last error: {self.last_exc!r})" if self.last_exc else "") + self.detail())
        return False


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    poll = Poll(predicate, timeout, message)
    while not poll.ready():
        time.sleep(interval)
    return poll.value


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SYMPHONY_"))}
    env["REDIS_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and everything in its group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def terminate(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM a process and wait for it; SIGKILL it if it does not end within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class ProcessRun:
    """A command running as a real process group, its output (stdout and stderr) in a file."""

    def __init__(self, argv: list[str], log_path: Path, *, env: dict[str, str], cwd: Path | None = None):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=str(cwd or ROOT), env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM to the group, SIGKILL if it has not ended within 30 s; its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_process_group(self.process)
        self.log.close()
        return self.process.returncode


class WorkerRun:
    """``symphony-worker`` running as a real process group, with its log in a file."""

    def __init__(self, redis_url: str, *args: str, log_dir: Path, heartbeat: float = 0.5, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "symphony.workers", "--heartbeat", str(heartbeat), "--idle-wait", "0.5", *args]
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(cwd or ROOT),
                                        env=env or worker_env(redis_url), start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout}s; log:\n{self.output()[-3000:]}") from None

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill_group(self) -> None:
        kill_process_group(self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_group()
        else:
            # children of a supervisor that died may still run: clean the group up
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()


def write_pipeline(path: Path, stages: list[dict[str, Any]], name: str = "testpipe", **defaults: Any) -> Path:
    data: dict[str, Any] = {"pipeline": name, "stages": stages}
    if defaults:
        data["defaults"] = defaults
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_session(path: Path, name: str, pipeline: str, items: list[Any] | None = None, root: str = "data",
                  **extra: Any) -> Path:
    data: dict[str, Any] = {"session": name, "pipeline": pipeline, "root": root}
    if items is not None:
        data["items"] = items
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sample_tasks(tmp: Path, seconds: float = 0.0) -> Path:
    """A copy of tasks/ whose handlers take ``seconds`` per item, rooted in ``tmp``."""
    dest = tmp / "tasks"
    shutil.copytree(TASKS, dest)
    pipeline = dest / "pipelines" / "scan.yaml"
    data = yaml.safe_load(pipeline.read_text())
    for stage in data["stages"]:
        stage.setdefault("params", {})["seconds"] = seconds
    pipeline.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def held(client, worker_id: str, keys=None) -> list[str]:
    """Every task message ``worker_id`` holds, over the sessions of its holds index (its in-flight
    lists are per session: ``symphony:inflight:{<session>}:<worker id>``)."""
    from symphony.engine.keys import DEFAULT_KEYS

    k = keys or DEFAULT_KEYS
    out: list[str] = []
    for session in sorted(client.smembers(k.holds(worker_id))):
        out += client.lrange(k.inflight(session, worker_id), 0, -1)
    return out


def plant_inflight(client, worker_id: str, session: str, *messages, keys=None) -> None:
    """Put messages into ``worker_id``'s in-flight list of ``session`` (indexed, as a claim does)."""
    from symphony.engine.keys import DEFAULT_KEYS

    k = keys or DEFAULT_KEYS
    client.sadd(k.holds(worker_id), session)
    client.sadd(k.holders(session), worker_id)
    client.rpush(k.inflight(session, worker_id), *messages)


def dead_letters(client, keys=None) -> list[dict]:
    """Every dead-letter entry, over the registered sessions (the lists are per session)."""
    import json

    from symphony.engine.keys import DEFAULT_KEYS

    k = keys or DEFAULT_KEYS
    return [json.loads(e) for s in sorted(client.hkeys(k.sessions)) for e in client.lrange(k.deadletter(s), 0, -1)]
