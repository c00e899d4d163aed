"""Case "fleet": what a large fleet's heartbeats and an open console cost, at 1,000 and 10,000 workers.

The fleet is emulated, not run: a few emulator processes (``EMULATORS``) each own a slice of the
worker ids and beat every one of them at the real interval (5 s, lease 12.5 s, the worker's
defaults) through the real heartbeat script (``WorkerLink``'s ``heartbeat.lua``, queued on a
pipeline, so one round trip carries many workers' beats and the emulator is never the
bottleneck). Each beat carries what a real worker's does (host, pool, pid, state, CPU, memory...),
four processes per host, a few pools, a tenth of the workers busy.

Measured over a window (``--fleet-window``, default 10 s) on the harness's own Redis:

* ``heartbeats``: the fleet alone: Redis commands/s (INFO stats), Redis CPU (INFO cpu
  ``used_cpu_sys + used_cpu_user`` delta over the window, as a share of one core), clients;
* ``snapshot``: ``Engine.snapshot()`` as ``symphony status`` reads it (every worker), and the
  console's paged read (one page of the worker table plus the fleet's aggregates), median/p95 ms;
* ``console``: a headless ``symphony-tui`` (``SymphonyApp.run(headless=True)`` in its own process,
  120x40, refresh 1 s) left idle on the main screen: its process CPU time over the window, and the
  Redis CPU it adds (the same INFO delta, minus the fleet's alone).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import psutil
import redis

from .common import Server, wait_for

HEARTBEAT_S = 5.0
LEASE_S = 12.5
EMULATORS = 2
PER_HOST = 4
POOLS = ("win", "linux", "gpu")
STAGES = ("rvm", "preprocess", "detection", "process")


def worker_id(n: int) -> str:
    return f"fleet-{n:05d}"


def _info(n: int, beat_no: int) -> dict[str, Any]:
    busy = (n + beat_no) % 10 == 0
    pool = POOLS[(n // PER_HOST) % len(POOLS)]
    return {"name": worker_id(n), "host": f"host-{n // PER_HOST:04d}", "pid": 1000 + n, "pool": pool,
            "roles": ",".join(STAGES[:2] if pool == "win" else STAGES[2:]), "state": "busy" if busy else "idle",
            "current": "", "done": beat_no, "cpu": float(n % 97), "mem": 2.0 + n % 5, "rss": 50_000_000 + n,
            "host_cpu": float((n // PER_HOST) % 100), "host_mem": 40.0, "cpus": 8, "started": 1.7e9,
            "supervisor": f"host-{n // PER_HOST:04d}:{n // PER_HOST}"}


def emulate(url: str, first: int, count: int, stop: Any, ready: Any) -> None:
    """Beat workers ``first .. first+count-1`` every HEARTBEAT_S, spread over the interval (a
    tick every 50 ms beats the workers due), until ``stop`` is set."""
    from symphony.engine import Engine
    from symphony.engine.scripts import execute, load_all, scripts

    lua = scripts().heartbeat
    ttl_ms = int(max(60.0, LEASE_S * 4) * 1000)
    with Engine.from_url(url) as engine:
        keys, client = engine.keys, engine.client
        load_all(client)
        ids = [worker_id(n) for n in range(first, first + count)]

        def beat(indices: range, beat_no: int) -> None:
            with client.pipeline(transaction=False) as pipe:
                queued = []
                for i in indices:
                    flat: list[Any] = []
                    for name, value in _info(first + i, beat_no).items():
                        flat.extend((name, value))
                    queued.append(lua.queue(pipe, (keys.workers, keys.worker(ids[i]), keys.clock, keys.grace,
                                                   keys.epoch),
                                            (ids[i], int(HEARTBEAT_S * 1000), int(LEASE_S * 1000), ttl_ms, *flat)))
                execute(client, pipe, queued)

        for start in range(0, count, 500):  # everyone registered before the clock starts
            beat(range(start, min(count, start + 500)), 0)
        ready.set()
        tick, ticks = 0.05, int(HEARTBEAT_S / 0.05)
        per_tick = count / ticks
        began, n = time.monotonic(), 0
        while not stop.is_set():
            step = n % ticks
            lo, hi = int(step * per_tick), int((step + 1) * per_tick)
            if hi > lo:
                beat(range(lo, hi), 1 + n // ticks)
            n += 1
            delay = began + n * tick - time.monotonic()
            if delay > 0:
                stop.wait(delay)


class Fleet:
    """EMULATORS processes beating ``workers`` workers until :meth:`stop`."""

    def __init__(self, url: str, workers: int, emulators: int = EMULATORS):
        ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
        self.stop_event = ctx.Event()
        self.procs, self.ready = [], []
        share = -(-workers // emulators)
        for e in range(emulators):
            first, count = e * share, max(0, min(share, workers - e * share))
            ready = ctx.Event()
            proc = ctx.Process(target=emulate, args=(url, first, count, self.stop_event, ready), daemon=True)
            proc.start()
            self.procs.append(proc)
            self.ready.append(ready)
        def registered() -> bool:
            if any(not p.is_alive() for p in self.procs):
                raise RuntimeError("an emulator process ended before registering its workers")
            return all(r.is_set() for r in self.ready)

        wait_for(registered, 120, 0.05, "the emulators to register the fleet")

    def stop(self) -> None:
        self.stop_event.set()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def redis_counters(client: redis.Redis) -> dict[str, float]:
    cpu, stats, clients = client.info("cpu"), client.info("stats"), client.info("clients")
    return {"cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            "commands": float(stats["total_commands_processed"]), "clients": float(clients["connected_clients"]),
            "t": time.monotonic()}


def window(client: redis.Redis, seconds: float) -> dict[str, float]:
    """Redis's commands/s and share of a core over ``seconds`` (INFO deltas)."""
    before = redis_counters(client)
    time.sleep(seconds)  # a measurement window, not a synchronisation
    after = redis_counters(client)
    span = after["t"] - before["t"]
    return {"commands_per_s": round((after["commands"] - before["commands"]) / span, 1),
            "redis_cpu_pct": round(100 * (after["cpu_s"] - before["cpu_s"]) / span, 2),
            "clients": int(after["clients"])}


def time_snapshots(url: str, reps: int) -> dict[str, Any]:
    from symphony.engine import Engine

    out: dict[str, Any] = {}
    with Engine.from_url(url) as engine:
        modes = {"full": lambda: engine.snapshot()}
        if hasattr(engine, "fleet_reader"):
            reader = engine.fleet_reader()
            modes["paged"] = lambda: engine.snapshot(reader=reader, page=(0, 60))
        for mode, read in modes.items():
            read()
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                snap = read()
                times.append(time.perf_counter() - t)
            times.sort()
            out[mode] = {"median_ms": round(statistics.median(times) * 1000, 1),
                         "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))] * 1000, 1),
                         "rows": len(snap.workers)}
    return out


def _console(url: str, ready: Any, stop: Any) -> None:
    import asyncio

    from symphony.console.app import SymphonyApp
    from symphony.console.backend import Backend
    from symphony.engine import Engine

    engine = Engine.from_url(url)
    app = SymphonyApp(Backend(engine, tasks_dir="/nonexistent"), refresh=1.0)

    async def run() -> None:
        async with app.run_test(size=(120, 40), headless=True) as pilot:
            await pilot.pause()
            wait = asyncio.get_running_loop().run_in_executor(None, stop.wait)
            ready.set()
            await wait

    asyncio.run(run())


def console_idle(url: str, client: redis.Redis, seconds: float, warmup: float = 3.0) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_console, args=(url, ready, stop), daemon=True)
    proc.start()
    try:
        wait_for(ready.is_set, 120, 0.05, "the headless console to start")
        time.sleep(warmup)  # its first polls (and the first full sweep) before the window
        ps = psutil.Process(proc.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        redis_window = window(client, seconds)
        cpu1 = sum(ps.cpu_times()[:2])
        return {"console_cpu_pct": round(100 * (cpu1 - cpu0) / seconds, 1), **redis_window}
    finally:
        stop.set()
        proc.join(15)
        if proc.is_alive():
            proc.kill()


def run_fleet(server: Server, *, sizes: tuple[int, ...], seconds: float, reps: int) -> list[dict[str, Any]]:
    rows = []
    for workers in sizes:
        server.reset()
        fleet = Fleet(server.url, workers)
        try:
            time.sleep(1.0)  # the beats spread over the interval
            beats = window(server.client, seconds)
            snaps = time_snapshots(server.url, reps)
            console = console_idle(server.url, server.client, seconds)
            console["redis_cpu_added_pct"] = round(console["redis_cpu_pct"] - beats["redis_cpu_pct"], 2)
        finally:
            fleet.stop()
        rows.append({"workers": workers, "heartbeats": beats, "snapshot": snaps, "console": console})
    return rows


if __name__ == "__main__":  # python -m bench.fleet: the case alone, printed as JSON
    import argparse
    import json

    p = argparse.ArgumentParser()
    p.add_argument("--workers", default="1000,10000")
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=15)
    a = p.parse_args()
    srv = Server()
    try:
        print(json.dumps(run_fleet(srv, sizes=tuple(int(x) for x in a.workers.split(",")), seconds=a.window,
                                   reps=a.reps), indent=2))
    finally:
        srv.close()
