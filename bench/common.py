"""Shared plumbing: the Redis server the harness owns, worker process groups, CPU accounting
(how much of the machine *other* processes took during a measurement), medians."""
from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]


def median(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def machine_info(client: redis.Redis | None = None) -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
                            "platform": platform.platform(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    try:
        import redis as redis_py

        info["redis_py"] = redis_py.__version__
        import hiredis  # noqa: F401

        info["hiredis"] = getattr(hiredis, "__version__", "yes")
    except ImportError:
        info["hiredis"] = None
    from importlib import metadata

    for dist in ("rq", "celery", "kombu", "dramatiq", "huey"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if client is not None:
        server = client.info("server")
        info["redis_server"] = f"{server.get('redis_version')} ({'valkey ' + str(server['valkey_version']) if 'valkey_version' in server else 'redis'})"
    return info


def load_now() -> dict[str, float]:
    one, five, _ = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2)}


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.005, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SYMPHONY_"))}
    env["REDIS_URL"] = redis_url
    env["BENCH_REDIS_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def tool(name: str) -> str:
    """A console script of this interpreter's environment (rq, celery, dramatiq, huey_consumer)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


class Group:
    """Worker processes we started, each in its own process group; stopped by their ids."""

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str], log_dir: str):
        self.procs: list[subprocess.Popen] = []
        self.logs: list[str] = []
        for index, cmd in enumerate(commands):
            log = os.path.join(log_dir, f"proc-{index}-{time.monotonic_ns()}.log")
            self.logs.append(log)
            with open(log, "wb") as fh:
                self.procs.append(subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                                   env=env, start_new_session=True, stdin=subprocess.DEVNULL))

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def tree(self) -> list[psutil.Process]:
        out = []
        for p in self.procs:
            try:
                proc = psutil.Process(p.pid)
                out.append(proc)
                out.extend(proc.children(recursive=True))
            except psutil.Error:
                continue
        return out

    def log_tail(self, chars: int = 1500) -> str:
        text = ""
        for log in self.logs:
            try:
                text += Path(log).read_text(errors="replace")[-chars:]
            except OSError:
                pass
        return text

    def stop(self, grace: float = 3.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:  # the whole group: children of a supervisor too
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


@dataclass
class CpuMeter:
    """How busy the machine was during a measurement, and how much of that was not us.

    ``foreign`` is the share of the machine (0..1 of all cores) used by processes other than
    the harness, its Redis and its workers: the noise of a shared machine.
    """

    ours: Callable[[], list[psutil.Process]]
    server: Callable[[], psutil.Process | None] = lambda: None
    t0: float = 0.0
    server0: float = 0.0
    busy0: float = 0.0
    ours0: float = 0.0
    procs: list[psutil.Process] = field(default_factory=list)

    def start(self) -> None:
        self.procs = self.ours()
        self.server_proc = self.server()
        self.server0 = _cpu_seconds([self.server_proc] if self.server_proc else [])
        self.t0, self.busy0, self.ours0 = time.monotonic(), _busy_seconds(), _cpu_seconds(self.procs)

    def stop(self) -> dict[str, float]:
        elapsed = max(1e-6, time.monotonic() - self.t0)
        busy = _busy_seconds() - self.busy0
        ours = _cpu_seconds(self.procs) - self.ours0
        ncpu = os.cpu_count() or 1
        server = _cpu_seconds([self.server_proc] if self.server_proc else []) - self.server0
        return {"server": round(server / elapsed, 3), "busy": round(busy / elapsed / ncpu, 3), "ours": round(ours / elapsed / ncpu, 3),
                "foreign": round(max(0.0, busy - ours) / elapsed / ncpu, 3),
                "workers_s": round(ours - server, 4), "server_s": round(server, 4)}


class Server:
    """The Redis the harness owns (``engine.EmbeddedRedis``: redis-server from PATH)."""

    def __init__(self, args: Sequence[str] = ()):
        from symphony.engine import EmbeddedRedis

        self.embedded = EmbeddedRedis(args=list(args))
        self.embedded.start()
        self.url = self.embedded.url
        # the peers' modules (imported by the harness to pre-fill their queues) read it; never a default
        os.environ["BENCH_REDIS_URL"] = self.url
        self.client = redis.Redis.from_url(self.url, decode_responses=True)

    @property
    def pid(self) -> int | None:
        return self.embedded.pid

    def process(self) -> psutil.Process | None:
        try:
            return psutil.Process(self.pid) if self.pid else None
        except psutil.Error:
            return None

    def reset(self) -> None:
        self.client.flushall()
        self.client.script_flush()
        self.client.config_resetstat()

    def close(self) -> None:
        self.client.close()
        self.embedded.close()


_TEMP_ROOT: str | None = None


def temp_dir(prefix: str) -> str:
    """A fresh directory under this run's temporary root (removed by :func:`remove_temp_dirs`)."""
    global _TEMP_ROOT
    if _TEMP_ROOT is None or not os.path.isdir(_TEMP_ROOT):
        _TEMP_ROOT = tempfile.mkdtemp(prefix="symphony-bench-")
    return tempfile.mkdtemp(prefix=prefix, dir=_TEMP_ROOT)


def remove_temp_dirs() -> None:
    global _TEMP_ROOT
    if _TEMP_ROOT is not None:
        import shutil

        shutil.rmtree(_TEMP_ROOT, ignore_errors=True)
        _TEMP_ROOT = None
