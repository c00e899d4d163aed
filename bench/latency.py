"""Latency from enqueue to the handler starting: one task every ``interval`` to idle workers.

Each system gets the same number of idle worker processes (their start-up is not measured:
a warm-up task runs first). Then, ``samples`` times, the harness takes the wall clock and
enqueues one task the way that system's users do (Symphony: ``Engine.enqueue`` of one item;
the minimal loops: ``RPUSH``; Huey: calling the task); the task's first act is to record the
wall clock (``bench.noop.mark``). Latency = the task's clock - the harness's clock (same
machine, same clock). The next task goes ``interval`` after the previous one was enqueued, once
the previous one has started.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from .common import Group, Server, bench_env, temp_dir, tool, wait_for
from .noop import MARKS
from .systems import write_session

SYSTEMS = ("symphony", "symphony-inline", "symphony-base", "minimal", "minimal32", "huey")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _setup(server: Server, name: str, workdir: str, processes: int) -> tuple[Group, Callable[[str], None], Callable[[], None]]:
    """Start ``name``'s idle workers; returns them, how to enqueue one task, and what to close."""
    url, env = server.url, bench_env(server.url)
    if name in ("symphony", "symphony-inline", "symphony-base"):
        from symphony.engine import Engine, initialize_session, load_session

        engine = Engine.from_url(url)
        initialize_session(engine, load_session(write_session(workdir, "lat", 1, 1, handler="bench.noop:symphony_mark",
                                                              isolation="inline" if name == "symphony-inline" else None)))
        from .systems import baseline_prefix

        prefix = baseline_prefix() if name == "symphony-base" else []
        group = Group([[*prefix, sys.executable, "-m", "symphony.workers", "--roles", "b1", "-n", str(processes),
                        "--log-level", "WARNING", "--name", "bench"]], env, workdir)
        return group, lambda item: engine.enqueue("lat", "b1", [(item, None)]), engine.close
    if name in ("minimal", "minimal32"):
        module = "bench.peers.minimal" if name == "minimal" else "bench.peers.minimal_batched"
        client = server.client
        group = Group([[sys.executable, "-m", module, "--url", url, "--task", "mark"] for _ in range(processes)],
                      env, workdir)
        client.rpush("bench:minimal", "1:i0000000")
        return group, lambda item: client.rpush("bench:minimal", f"1:{item}"), lambda: None
    if name == "huey":
        from .peers import huey_app

        group = Group([[tool("huey_consumer"), "bench.peers.huey_app.huey", "-w", str(processes), "-k", "process",
                        "-q"]], env, workdir)
        huey_app.mark_task("i0000000")
        return group, lambda item: huey_app.mark_task(item), lambda: None
    raise ValueError(name)


def run_one(server: Server, name: str, *, samples: int, interval_s: float, processes: int) -> dict[str, Any]:
    server.reset()
    workdir = temp_dir("symphony-latency-")
    group, enqueue, close = _setup(server, name, workdir, processes)
    client = server.client
    try:
        wait_for(lambda: client.llen(MARKS) >= 1 or not group.alive(), 60, what=f"{name}'s warm-up task")
        if not group.alive():
            raise RuntimeError(f"{name} workers exited early:\n{group.log_tail()}")
        time.sleep(0.5)  # idle: blocked waiting for work
        client.delete(MARKS)
        sent: dict[str, float] = {}
        next_at = time.monotonic()
        for n in range(samples):
            while time.monotonic() < next_at:
                time.sleep(min(0.01, max(0.0, next_at - time.monotonic())))
            item = f"s{n:07d}"
            sent[item] = time.time()
            enqueue(item)
            next_at = time.monotonic() + interval_s
            wait_for(lambda: client.llen(MARKS) >= n + 1, 30, interval=0.001, what=f"{name}'s task {n}")
        marks = [m.split() for m in client.lrange(MARKS, 0, -1)]
    finally:
        group.stop()
        close()
    lat = [(float(at) - sent[item]) * 1000 for item, at in marks]
    return {"system": name, "samples": len(lat), "processes": processes, "interval_s": interval_s,
            "p50_ms": round(percentile(lat, 0.5), 3), "p90_ms": round(percentile(lat, 0.9), 3),
            "p99_ms": round(percentile(lat, 0.99), 3), "max_ms": round(max(lat), 3), "latencies_ms":
            [round(x, 3) for x in lat]}


def summarize(rounds: list[dict[str, Any]], systems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in systems:
        lat = [x for r in rounds if "latencies_ms" in r.get(name, {}) for x in r[name]["latencies_ms"]]
        if not lat:
            continue
        ratios = sorted(r[name]["p50_ms"] / r["minimal"]["p50_ms"] for r in rounds
                        if "p50_ms" in r.get(name, {}) and "p50_ms" in r.get("minimal", {}))
        out[name] = {"samples": len(lat), "p50_ms": round(percentile(lat, 0.5), 3),
                     "p90_ms": round(percentile(lat, 0.9), 3), "p99_ms": round(percentile(lat, 0.99), 3),
                     "p50_vs_minimal": round(ratios[len(ratios) // 2], 2) if ratios else None}
    return out


def main(argv: list[str] | None = None) -> int:  # python -m bench.latency: this case alone
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    args = p.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    server = Server()
    try:
        rounds = []
        for r in range(args.rounds):
            row = {}
            for name in systems:
                row[name] = run_one(server, name, samples=args.samples, interval_s=args.interval,
                                    processes=args.processes)
                print(f"round {r + 1} {name}: p50 {row[name]['p50_ms']} p90 {row[name]['p90_ms']} "
                      f"p99 {row[name]['p99_ms']} ms", file=sys.stderr, flush=True)
            rounds.append(row)
        print(json.dumps(summarize(rounds, systems), indent=1))
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
