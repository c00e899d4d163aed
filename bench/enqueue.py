"""Case 2: ``initialize`` of a large session, verification included.

Times what ``symphony initialize FILE`` does: load and verify the session file (its pipeline
and handlers, every item's name, duplicates, required metadata, the registry checks that need
Redis: ``Engine.verify``), register the session and enqueue every item for the first stage
(``engine.initialize_session``). Items come from
``items_from: {range: ...}``. The queue is checked afterwards: every item queued exactly once.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import time
from typing import Any

from .common import Server, temp_dir
from .systems import write_session


def run_one(server: Server, *, items: int, stages: int = 4) -> dict[str, Any]:
    from symphony.engine import Engine, initialize_session

    server.reset()
    path = write_session(temp_dir("symphony-bench-init-"), "bench-init", items, stages)
    with Engine.from_url(server.url) as engine:
        engine.ping()
        t0 = time.perf_counter()
        report = engine.verify([str(path)])
        if report.problems or len(report.specs) != 1:
            raise RuntimeError(f"verification failed: {[str(p) for p in report.problems]}")
        spec = report.specs[0]
        t1 = time.perf_counter()
        result = initialize_session(engine, spec)
        t2 = time.perf_counter()
    queued = server.client.llen(K.queue("b1", "bench-init"))
    if result.added != items or queued != items:
        raise RuntimeError(f"initialize enqueued {result.added} (queue holds {queued}), expected {items}")
    total = t2 - t0
    return {"items": items, "load_verify_s": round(t1 - t0, 4), "enqueue_s": round(t2 - t1, 4),
            "total_s": round(total, 4), "rate": round(items / total, 1)}


def single(server: Server, *, calls: int) -> dict[str, Any]:
    """One item per ``Engine.enqueue`` call (what an application that submits work as it comes
    does), against one ``LPUSH`` per item on the same kind of connection: median ms per call."""
    import statistics

    from symphony.engine import Engine, initialize_session, load_session

    server.reset()
    path = write_session(temp_dir("symphony-bench-single-"), "single", 1, 1)
    with Engine.from_url(server.url) as engine:
        initialize_session(engine, load_session(path))
        engine.enqueue("single", "b1", [("warm", None)])
        times = []
        for n in range(calls):
            t = time.perf_counter()
            engine.enqueue("single", "b1", [(f"e{n:07d}", None)])
            times.append(time.perf_counter() - t)
        client = engine.client
        pushes = []
        for n in range(calls):
            t = time.perf_counter()
            client.lpush("bench:lpush", f"e{n:07d}")
            pushes.append(time.perf_counter() - t)
    enq, push = statistics.median(times) * 1000, statistics.median(pushes) * 1000
    return {"calls": calls, "enqueue_ms": round(enq, 4), "lpush_ms": round(push, 4), "ratio": round(enq / push, 2)}
