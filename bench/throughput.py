"""Case 1: processing throughput, one stage and several, every system side by side.

For each system: empty Redis, pre-fill the queue, start the workers, wait until a tenth of the
tasks completed (start-up and warm-up excluded), then count completions over a fixed window
(or until the last twentieth of the queue, if it drains first) by sampling the shared counter.
The rate is completions / seconds inside that window; ``foreign`` is how much of the machine
other processes used meanwhile.
"""
from __future__ import annotations

import math
import time
from typing import Any

from .common import CpuMeter, Group, Server, bench_env, temp_dir
from .noop import COUNTER
from .systems import System


def _count(server: Server) -> int:
    return int(server.client.get(COUNTER) or 0)


def run_one(server: Server, system: System, *, stages: int, processes: int, window_s: float, rate_guess: float,
            heartbeat: float, min_tasks: int = 200, start_timeout: float = 60.0) -> dict[str, Any]:
    server.reset()
    workdir = temp_dir("symphony-bench-")
    total = max(min_tasks, int(rate_guess * window_s * 1.8))
    items = max(1, math.ceil(total / stages))
    total = items * stages
    t = time.perf_counter()
    system.prefill(server.url, items, stages, workdir)
    prefill_s = time.perf_counter() - t
    server.client.config_resetstat()
    warm = max(min(50, total // 4), total // 10)
    end_mark = total - max(1, total // 20)
    group = Group(system.commands(server.url, processes, stages, heartbeat), bench_env(server.url), workdir)
    meter = CpuMeter(lambda: [p for p in [server.process()] if p] + group.tree(), server.process)
    try:
        deadline = time.monotonic() + start_timeout
        while _count(server) < warm:
            if not group.alive():
                raise RuntimeError(f"{system.name} workers exited early:\n{group.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{system.name}: fewer than {warm} tasks done after {start_timeout:.0f}s:\n"
                                   f"{group.log_tail()}")
            time.sleep(0.01)
        meter.start()
        t1 = time.perf_counter()
        c1 = _count(server)
        while True:
            time.sleep(0.01)
            t2 = time.perf_counter()
            c2 = _count(server)
            if c2 >= end_mark or t2 - t1 >= window_s:
                break
        cpu = meter.stop()
        stats = server.client.info("commandstats")
    finally:
        group.stop()
    seconds = t2 - t1
    return {"system": system.name, "stages": stages, "processes": processes, "items": items, "tasks": total,
            "prefill_s": round(prefill_s, 3), "window_s": round(seconds, 3), "window_tasks": c2 - c1,
            "rate": round((c2 - c1) / seconds, 1) if seconds > 0 else None, "cpu": cpu,
            "drained": c2 >= end_mark, "server_us_per_task": _server_us(stats, c2)}


def _server_us(stats: dict[str, Any], done: int) -> dict[str, float]:
    """Redis CPU per completed task, by command (``INFO commandstats``, since the reset)."""
    out = {}
    for name, row in stats.items():
        if isinstance(row, dict) and done:
            out[name.removeprefix("cmdstat_")] = round(row.get("usec", 0) / done, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:6])
