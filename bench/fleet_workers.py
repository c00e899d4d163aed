"""Case: what a fleet costs Redis: a registry change at S sessions x W workers, and connections
per worker process.

    python -m bench.fleet_workers                     # 1,000 sessions x 1,000 emulated workers
    python -m bench.fleet_workers --sessions 100 --workers 50

**registry change**: S sessions are registered (a two-stage pipeline each, one stage with an
alias). W emulated workers follow the registry the way a ``--roles`` worker does (its heart and
its loop, on one shared client: what each worker sends is the same as from its own process):
at each change each worker catches up (``Engine.follow_registry``: the change log's new entries,
and the definitions of the sessions named there) and resolves its roles again (the pools, its
aliases). Three kinds of change are measured, three times each (the median of each, then the median of
the three): a session registered, one cancelled, one purged. Redis's
CPU for the whole fleet per change is the server's ``used_cpu_sys + used_cpu_user`` delta (and,
beside it, the commands' own time from ``INFO commandstats``). The old path (every worker drops
every cached definition and re-reads every session's definition for its aliases) is measured on
a few workers and scaled to W (it is linear in W: every worker sends the same commands).

**connections**: ``symphony-worker --processes P`` on the harness's Redis, idle (blocked on the
bells, beating every 0.5 s, shipping log lines); ``CLIENT LIST`` sampled ten times, the most
seen per worker process (by client name) and for the supervisor.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from symphony.engine.keys import DEFAULT_KEYS

from .common import ROOT, Server, bench_env, temp_dir, wait_for

REPEAT = 3  # each kind of change, measured this many times (the median is reported)


def _pipeline(workdir: Path):
    from symphony.engine import load_pipeline

    path = workdir / "fleet-pipe.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"pipeline": "fleet", "stages": [
        {"name": "fetch", "pool": "p", "aliases": ["get"], "command": ["true"], "output": "{root}/{item}.a"},
        {"name": "crunch", "pool": "q", "command": ["true"], "output": "{root}/{item}.b"}]}, sort_keys=False))
    return load_pipeline(path)


def _redis_cpu(client) -> tuple[float, float]:
    """(used_cpu_sys + used_cpu_user in s, the commands' own time in s) so far."""
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    return (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            sum(row.get("usec", 0) for row in stats.values()) / 1e6)


class Emulated:
    """One worker's registry state on a shared client: its cache of definitions and its follower."""

    def __init__(self, client, keys):
        from symphony.engine.following import RegistryFollower
        from symphony.engine.records import RecordCache

        self.client, self.keys = client, keys
        self.records = RecordCache(client, keys)
        self.follower = RegistryFollower(client, keys, self.records)

    def follow(self) -> None:
        """What a --roles worker does after a heartbeat saw the epoch move (new code)."""
        from symphony.engine import registry

        if self.follower.follow().roles_may_change:
            registry.roles_for(registry.pools(self.client, self.keys), None, ["get"], self.follower.aliases())

    def follow_old(self) -> None:
        """What it did before the change log: forget everything, re-read every definition."""
        from symphony.engine import registry

        self.records.clear()
        registry.roles_for(registry.pools(self.client, self.keys), None, ["get"],
                           registry.aliases(self.client, self.keys))


def registry_change(server: Server, *, sessions: int, workers: int, old_workers: int) -> dict[str, Any]:
    from symphony.engine import Engine, SessionRecord
    from symphony.engine.control import purge_session

    server.reset()
    workdir = Path(temp_dir("symphony-fleet-"))
    pipeline = _pipeline(workdir)
    with Engine.from_url(server.url) as engine:
        for n in range(sessions):
            engine.register_session(SessionRecord(name=f"s{n:05d}", pipeline=pipeline, root=str(workdir)), items=10)
        fleet = [Emulated(engine.client, engine.keys) for _ in range(workers)]
        for w in fleet:
            w.follow()  # each worker's first read (everything): not what a change costs
        changes: dict[str, Any] = {}
        steps = {"registered": lambda n: engine.register_session(SessionRecord(name=f"fresh{n}", pipeline=pipeline,
                                                                               root=str(workdir))),
                 "cancelled": lambda n: engine.cancel(f"s{sessions // 3 + n:05d}"),
                 "purged": lambda n: purge_session(engine, f"s{2 * sessions // 3 + n:05d}", force=True)}
        for name, change in steps.items():
            runs = []
            for n in range(REPEAT):
                change(n)
                before = _redis_cpu(server.client)
                started = time.perf_counter()
                for w in fleet:
                    w.follow()
                wall = time.perf_counter() - started
                after = _redis_cpu(server.client)
                runs.append({"redis_cpu_ms": round((after[0] - before[0]) * 1000, 1),
                             "commands_ms": round((after[1] - before[1]) * 1000, 1), "client_s": round(wall, 2)})
            changes[name] = {"runs": runs, "redis_cpu_ms": statistics.median(r["redis_cpu_ms"] for r in runs),
                             "commands_ms": statistics.median(r["commands_ms"] for r in runs)}
        old = fleet[:old_workers]
        engine.cancel(f"s{sessions - 1:05d}")  # (the old path's cost does not depend on the change)
        before = _redis_cpu(server.client)
        for w in old:
            w.follow_old()
        after = _redis_cpu(server.client)
    per_worker = (after[0] - before[0]) / max(1, len(old))
    new_ms = statistics.median(c["redis_cpu_ms"] for c in changes.values())
    old_ms = round(per_worker * workers * 1000, 1)
    return {"sessions": sessions, "workers": workers, "changes": changes,
            "redis_cpu_ms_per_change": new_ms,
            "old_redis_cpu_ms_per_change": old_ms, "old_measured_on_workers": len(old),
            "old_commands_ms_per_worker": round((after[1] - before[1]) / max(1, len(old)) * 1000, 2),
            "ratio_old_to_new": round(old_ms / new_ms, 1) if new_ms else None}


def connections(server: Server, *, processes: int, timeout: float = 60.0) -> dict[str, Any]:
    """Connections per worker process of ``symphony-worker --processes P``, idle, from CLIENT LIST."""
    server.reset()
    env = bench_env(server.url)
    log_path = Path(temp_dir("symphony-conns-")) / "worker.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "symphony.workers", "--processes", str(processes),
                                 "--heartbeat", "0.5", "--idle-wait", "1", "--roles", "idle"], cwd=str(ROOT), env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: server.client.zcard(DEFAULT_KEYS.workers) >= processes, timeout, what="the workers to beat")
        samples = []
        for _ in range(10):  # idle: blocked on the bells, beating, shipping log lines
            clients = server.client.client_list()
            per: dict[str, int] = {}
            for c in clients:
                name = c.get("name", "")
                if name.startswith(("symphony-worker:", "symphony-supervisor:")):
                    per[name] = per.get(name, 0) + 1
            samples.append(per)
            time.sleep(0.3)
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    workers = [max(s.get(n, 0) for s in samples) for n in {n for s in samples for n in s}
               if n.startswith("symphony-worker:")]
    supervisors = [max(s.get(n, 0) for s in samples) for n in {n for s in samples for n in s}
                   if n.startswith("symphony-supervisor:")]
    total = sum(workers) + sum(supervisors)
    return {"processes": processes, "per_worker_process_max": max(workers) if workers else None,
            "worker_processes_seen": len(workers), "supervisor": max(supervisors) if supervisors else 0,
            "total_max": total, "per_process_with_supervisor": round(total / processes, 2)}


def host_sampling(repeat: int = 50) -> dict[str, Any]:
    """CPU of one heartbeat's sample of this process and its host, against psutil's recursive walk
    of /proc for the process's children (what each beat used to do)."""
    import os

    import psutil

    from symphony.workers.hostinfo import HostSampler

    sampler = HostSampler()
    me = psutil.Process(os.getpid())
    started = time.process_time()
    for _ in range(repeat):
        sampler.sample()
    sample_us = (time.process_time() - started) / repeat * 1e6
    started = time.process_time()
    for _ in range(repeat):
        me.children(recursive=True)
    walk_us = (time.process_time() - started) / repeat * 1e6
    return {"processes_on_host": len(psutil.pids()), "sample_us": round(sample_us), "recursive_walk_us": round(walk_us)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_workers")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--old-workers", type=int, default=10)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args(argv)
    server = Server()
    try:
        out = {"registry_change": registry_change(server, sessions=args.sessions, workers=args.workers,
                                                  old_workers=args.old_workers),
               "connections": connections(server, processes=args.processes), "host_sampling": host_sampling()}
    finally:
        server.close()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
