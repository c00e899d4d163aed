"""What a worker process adds to a task: command stages against a bare ``subprocess.run`` loop,
and how long a worker takes from its launch to running its first task.

    python -m bench.worker_costs                      # both, default sizes
    python -m bench.worker_costs command --tasks 400 --seconds 0.02 --processes 2
    python -m bench.worker_costs startup --repeat 5

**command**: the same command (``sleep SECONDS``) run as a Symphony command stage by
``symphony-worker --processes P`` and by P plain processes that call ``subprocess.run`` in a loop.
Both rates are measured in a window after a warm-up (start-up excluded); the overhead per task is
``P / rate_symphony - P / rate_bare`` (what a worker slot spends on a task beyond the command).

**startup**: from ``Popen(symphony-worker --processes 1)`` to the worker's registration (its first
heartbeat's ``started``), and to its first handler running (a Python handler that records
the time; the first Python task also starts the worker's handler executor).
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .common import Group, Server, bench_env, load_now, temp_dir, wait_for

BARE = """
import subprocess, sys, time, redis
client = redis.Redis.from_url(sys.argv[1])
cmd = sys.argv[2:]
while True:
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if client.incr("bench:count") < 0:
        break
"""


def _session(workdir: Path, items: int, stage: dict, name: str = "costs") -> Path:
    (workdir / "pipelines").mkdir(parents=True, exist_ok=True)
    (workdir / "pipelines" / "p.yaml").write_text(yaml.safe_dump(
        {"pipeline": "costs", "defaults": {"timeout": 60, "max_attempts": 1}, "stages": [stage]}, sort_keys=False))
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"session": name, "pipeline": "pipelines/p.yaml", "root": str(workdir / "data"),
                                    "items_from": {"range": {"prefix": "i", "start": 0, "count": items, "width": 6}}},
                                   sort_keys=False))
    return path


def _initialize(url: str, path: Path) -> None:
    from symphony.engine import Engine, initialize_session, load_session

    with Engine.from_url(url) as engine:
        initialize_session(engine, load_session(path))


def _rate(count, total: int, warm_fraction: float = 0.2, window_s: float = 6.0, timeout: float = 120.0) -> float:
    """Completions per second between the warm-up mark and the end of the window."""
    deadline = time.monotonic() + timeout
    warm = int(total * warm_fraction)
    while count() < warm:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {warm} tasks done after {timeout:.0f}s")
        time.sleep(0.01)
    t1, c1 = time.perf_counter(), count()
    end = total - max(1, total // 10)
    while True:
        time.sleep(0.01)
        t2, c2 = time.perf_counter(), count()
        if c2 >= end or t2 - t1 >= window_s:
            return (c2 - c1) / (t2 - t1)


def command_case(server: Server, *, tasks: int, seconds: float, processes: int) -> dict:
    cmd = ["sleep", f"{seconds:g}"]
    # Symphony: a command stage with no output, run by one supervisor of P processes
    server.reset()
    workdir = Path(temp_dir("symphony-costs-"))
    _initialize(server.url, _session(workdir, tasks, {"name": "cmd", "pool": "costs", "command": cmd}))
    group = Group([[sys.executable, "-m", "symphony.workers", "--roles", "cmd", "-n", str(processes), "--heartbeat",
                    "5", "--log-level", "WARNING"]], bench_env(server.url), str(workdir))
    try:
        symphony = _rate(lambda: int(server.client.hget(K.stats("costs"), "cmd|completed") or 0), tasks)
    finally:
        group.stop()
    # the bare loop: P processes calling subprocess.run, counting in the same Redis
    server.reset()
    bare_group = Group([[sys.executable, "-c", BARE, server.url, *cmd] for _ in range(processes)],
                       bench_env(server.url), str(workdir))
    try:
        bare = _rate(lambda: int(server.client.get("bench:count") or 0), tasks)
    finally:
        bare_group.stop()
    overhead_ms = (processes / symphony - processes / bare) * 1000
    return {"case": "command", "command": " ".join(cmd), "tasks": tasks, "processes": processes,
            "symphony_rate": round(symphony, 1), "bare_rate": round(bare, 1), "ratio": round(symphony / bare, 3),
            "overhead_ms_per_task": round(overhead_ms, 2), "load": load_now()}


def startup_case(server: Server, *, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        server.reset()
        workdir = Path(temp_dir("symphony-costs-"))
        _initialize(server.url, _session(workdir, 1, {"name": "first", "pool": "costs",
                                                      "handler": "bench.worker_costs:record_start"}))
        launched = time.time()
        group = Group([[sys.executable, "-m", "symphony.workers", "--roles", "first", "-n", "1", "--burst",
                        "--log-level", "WARNING"]], bench_env(server.url), str(workdir))
        try:
            ran = float(wait_for(lambda: server.client.get("bench:started"), 60, interval=0.002, what="the first task"))
            registered = None
            for key in server.client.keys(K.worker("*")):  # a bench Redis: nothing else in it
                registered = float(server.client.hget(key, "started") or 0) or None
        finally:
            group.stop()
        runs.append({"handler_started_s": round(ran - launched, 3),
                     "process_started_s": round(registered - launched, 3) if registered else None})
    keys = ("process_started_s", "handler_started_s")
    summary = {k: statistics.median([r[k] for r in runs if r[k] is not None] or [0]) for k in keys}
    return {"case": "startup", "runs": runs, "median": summary, "load": load_now()}



def record_start(ctx) -> None:
    """The startup case's handler: when did the first task start (wall clock)."""
    from .noop import client

    client().set("bench:started", f"{time.time():.6f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.worker_costs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="*", metavar="CASE", help="command, startup (default: both)")
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--seconds", type=float, default=0.02, help="how long the command sleeps (default %(default)s)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5, help="start-up runs (default %(default)s)")
    p.add_argument("--json", metavar="FILE", help="append the results to FILE as JSON lines")
    args = p.parse_args(argv)
    cases = args.cases or ["command", "startup"]
    unknown = [c for c in cases if c not in ("command", "startup")]
    if unknown:
        p.error(f"unknown case(s): {', '.join(unknown)}")
    server = Server()
    try:
        for case in cases:
            if case == "command":
                result = command_case(server, tasks=args.tasks, seconds=args.seconds, processes=args.processes)
            else:
                result = startup_case(server, repeat=args.repeat)
            print(json.dumps(result), flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(result) + "\n")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
