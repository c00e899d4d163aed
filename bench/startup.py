"""Throughput with start-up included: a small batch of tasks, timed from launching the workers.

The same no-op tasks as the throughput case (``bench.noop.bump``), pre-filled; the clock starts
just before the worker processes are launched and stops when the last task is done. Rate =
tasks / that time: what a user who starts workers for a few thousand tasks sees.
"""
from __future__ import annotations

import time
from typing import Any

from .common import Group, Server, bench_env, temp_dir
from .noop import COUNTER
from .systems import System


def run_one(server: Server, system: System, *, tasks: int, processes: int, heartbeat: float = 5.0,
            timeout: float = 120.0) -> dict[str, Any]:
    server.reset()
    workdir = temp_dir("symphony-startup-")
    system.prefill(server.url, tasks, 1, workdir)
    started = time.perf_counter()
    group = Group(system.commands(server.url, processes, 1, heartbeat), bench_env(server.url), workdir)
    try:
        deadline = time.monotonic() + timeout
        first = None
        while True:
            done = int(server.client.get(COUNTER) or 0)
            now = time.perf_counter()
            if done and first is None:
                first = now
            if done >= tasks:
                break
            if not group.alive():
                raise RuntimeError(f"{system.name} workers exited early:\n{group.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{system.name}: {done} of {tasks} tasks after {timeout:.0f}s")
            time.sleep(0.002)
    finally:
        group.stop()
    total = now - started
    return {"system": system.name, "tasks": tasks, "processes": processes, "seconds": round(total, 3),
            "first_task_s": round(first - started, 3), "rate": round(tasks / total, 1)}
