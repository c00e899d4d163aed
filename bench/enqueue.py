"""Case 2: ``initialize`` of a large session, verification included.

Times what ``symphony initialize FILE`` does: load and verify the session file (its pipeline,
every item's name), register the session and enqueue every item for the first stage
(``engine.load_session`` + ``engine.initialize_session``). Items come from
``items_from: {range: ...}``. The queue is checked afterwards: every item queued exactly once.
"""
from __future__ import annotations

import time
from typing import Any

from .common import Server, temp_dir
from .systems import write_session


def run_one(server: Server, *, items: int, stages: int = 4) -> dict[str, Any]:
    from engine import Engine, initialize_session, load_session

    server.reset()
    path = write_session(temp_dir("symphony-bench-init-"), "bench-init", items, stages)
    with Engine.from_url(server.url) as engine:
        engine.ping()
        t0 = time.perf_counter()
        spec = load_session(path)
        verify = _verifier()
        if verify is not None:
            verify(spec)
        t1 = time.perf_counter()
        result = initialize_session(engine, spec)
        t2 = time.perf_counter()
    queued = server.client.llen("b1:bench-init")
    if result.added != items or queued != items:
        raise RuntimeError(f"initialize enqueued {result.added} (queue holds {queued}), expected {items}")
    total = t2 - t0
    return {"items": items, "load_verify_s": round(t1 - t0, 4), "enqueue_s": round(t2 - t1, 4),
            "total_s": round(total, 4), "rate": round(items / total, 1), "verifier": verify is not None}


def _verifier():
    """The engine's deeper session verification, when this engine has one (issue 3)."""
    import engine

    for name in ("verify_session", "verify"):
        fn = getattr(engine, name, None)
        if callable(fn):
            return fn
    return None
