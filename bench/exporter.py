"""Case 8: what the Prometheus exporter costs Redis, and what the duration histogram costs a task.

**Exporter.** The snapshot case's deployment (S sessions x 4 stages, a few items queued in each,
W workers) plus a duration histogram for each stage; then, through the exporter's own code:
one read of everything it exports (``read_everything``: the snapshot, the histograms, the
machine metrics), timed and its round trips counted; the rendering of ``/metrics`` from a read
(``generate_latest``), with the text's size and series; and ten scrapers hitting ``/metrics`` at
once over HTTP, counting how many reads of Redis they caused (one, by design).

**Finish.** Redis's own time in ``finish.lua`` per completed task (``INFO commandstats``), one
task per call and 32 per call (a worker's prefetch), the claims kept out of the measure: the
tasks are claimed first, then reported with no claim. Run at two commits it tells the cost of a
change to the finish path (docs/benchmarks.md has the histogram's).
"""
from __future__ import annotations

import statistics
from dataclasses import replace
import threading
import time
import urllib.request
from typing import Any

from .common import Server
from .snapshot import STAGES, CountingConnection, build, counting_client


def _histograms(server: Server) -> None:
    """Each stage's histogram as a day of tasks would leave it (finish.lua's fields)."""
    from symphony.engine.keys import DEFAULT_KEYS

    with server.client.pipeline(transaction=False) as pipe:
        for stage in STAGES:
            pipe.hset(DEFAULT_KEYS.durations(stage), mapping={"100": 5000, "250": 3000, "1000": 800, "inf": 2,
                                                              "sum_ms": 2_400_000})
        pipe.execute()


def run_exporter(server: Server, *, sessions: int, workers: int, reps: int) -> dict[str, Any]:
    from symphony.console.exporter import Exporter, read_everything
    from symphony.engine import Engine, resolve_redis

    build(server, sessions=sessions, workers=workers)
    _histograms(server)
    engine = Engine(resolve_redis(server.url), client=counting_client(server.url))
    exporter = Exporter(engine, port=0, cache_s=60.0)
    try:
        read_everything(engine)  # connect, load scripts
        read_ms, trips = [], []
        for _ in range(reps):
            before = CountingConnection.sent
            t = time.perf_counter()
            reading = read_everything(engine)
            read_ms.append((time.perf_counter() - t) * 1000)
            trips.append(CountingConnection.sent - before)
        assert reading.ok, reading.error
        render_ms = []
        for _ in range(reps):  # each time as for a new reading: families built, written out, gzipped
            fresh = replace(reading, at=reading.at + (len(render_ms) + 1) * 1e-6)
            t = time.perf_counter()
            exporter.collector.render(fresh, gzipped=True)
            render_ms.append((time.perf_counter() - t) * 1000)
        text = exporter.collector.render(fresh)
        series = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
        exporter.start()
        reads_before = exporter.cache.reads
        sent_before = CountingConnection.sent
        bodies: list[int] = []

        def scrape() -> None:
            with urllib.request.urlopen(exporter.url + "/metrics", timeout=120) as response:
                bodies.append(len(response.read()))

        t = time.perf_counter()
        threads = [threading.Thread(target=scrape) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ten_s = time.perf_counter() - t
        return {"sessions": sessions, "stages": len(STAGES), "workers": workers,
                "read_ms": round(statistics.median(read_ms), 2), "round_trips": max(trips),
                "render_ms": round(statistics.median(render_ms), 2), "bytes": len(text), "series": series,
                "ten_scrapers": {"redis_reads": exporter.cache.reads - reads_before,
                                 "round_trips": CountingConnection.sent - sent_before,
                                 "wall_ms": round(ten_s * 1000, 1), "answers": len(bodies)}}
    finally:
        exporter.stop()
        engine.close()


def run_finish(server: Server, *, tasks: int, per_call: int) -> dict[str, Any]:
    """Redis's µs in finish.lua per completed task (the claims measured apart)."""
    from symphony.engine import (Engine, Finish, Handler, Outcome, OutcomeKind, Pipeline, SessionRecord, Stage,
                                 resolve_redis)

    server.reset()
    pipeline = Pipeline("fin", (Stage("f1", Handler("python", target="bench.noop:symphony_task"), pool="bench"),))
    with Engine(resolve_redis(server.url)) as engine:
        engine.register_session(SessionRecord(name="fin", pipeline=pipeline, root="/nonexistent"), items=tasks)
        engine.enqueue("fin", "f1", [(f"i{n}", None) for n in range(tasks)])
        link = engine.worker_link("bench-finish", ["f1"])
        link.beat(5.0, 12.5, {"name": "bench-finish", "state": "idle"})
        done, usec, calls = 0, 0.0, 0
        while done < tasks:
            step = link.step(want=per_call)
            if not step.batch:
                if link.hint is None:
                    break
                continue
            usec_before, calls_before = _evalsha(server)  # only the report is measured, not the claim
            link.step([Finish(c, Outcome(OutcomeKind.DONE, duration_ms=37 + n), None, 1) for n, c in enumerate(step.batch)],
                      claim=False)
            usec_after, calls_after = _evalsha(server)
            usec, calls, done = usec + usec_after - usec_before, calls + calls_after - calls_before, done + len(step.batch)
    return {"tasks": done, "per_call": per_call, "calls": calls, "usec_per_task": round(usec / max(1, done), 2)}


def _evalsha(server: Server) -> tuple[float, int]:
    stats = server.client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0)), int(stats.get("calls", 0))
