"""Case 3: Redis memory per queued task and after a session completes (``INFO memory`` deltas).

Symphony: register the session, note ``used_memory``, enqueue N items, note it again (per
queued task = delta / N: the message in the list plus the item's ``live`` entry, the dedup
that makes initialize and repair idempotent). Then workers drain the session and the memory
left is reported, with what holds it (the capped results stream, the counters): it does not
grow with N. Peers: the same delta for their queued tasks, for comparison.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import time
from typing import Any

from .common import Group, Server, bench_env, temp_dir, wait_for
from .systems import ALL, symphony_commands, write_session


def used(server: Server) -> int:
    return int(server.client.info("memory")["used_memory"])


def symphony(server: Server, *, items: int, processes: int, drain_timeout: float = 600.0) -> dict[str, Any]:
    from symphony.engine import Engine, load_session

    server.reset()
    workdir = temp_dir("symphony-bench-mem-")
    spec = load_session(write_session(workdir, "bench-mem", items, 1))
    with Engine.from_url(server.url) as engine:
        engine.register_session(spec.record(), items=items)
        m0 = used(server)
        # as initialize enqueues them: each message carries its item's ordinal (counted done once)
        engine.enqueue(spec.name, spec.pipeline.stages[0].name,
                       ((item.id, None, n) for n, item in enumerate(spec.items)))
        m1 = used(server)
        sample = server.client.lindex(K.queue("b1", "bench-mem"), 0)
        t = time.perf_counter()
        group = Group([symphony_commands(server.url, processes, 1, 5.0)[0] + ["--burst"]],
                      bench_env(server.url), workdir)
        try:
            wait_for(lambda: group.procs[0].poll() is not None, drain_timeout, 0.05, "the workers to drain the session")
        finally:
            group.stop()
        drain_s = time.perf_counter() - t
        stats = server.client.hgetall(K.stats("bench-mem"))
        if int(stats.get("b1|completed", 0)) != items:
            raise RuntimeError(f"session did not complete: {stats}\n{group.log_tail()}")
        m2 = used(server)
        holders = {key: server.client.memory_usage(key, samples=0) or 0
                   for key in (K.results, K.stats("bench-mem"), K.live("bench-mem"),
                               K.events, K.sessions, K.session("bench-mem"))}
    return {"items": items, "queued_bytes_per_task": round((m1 - m0) / items, 1), "message_bytes": len(sample),
            "after_complete_bytes": m2 - m0, "after_complete_bytes_per_task": round((m2 - m0) / items, 2),
            "results_stream_entries": server.client.xlen(K.results),
            "held_by": {k: v for k, v in holders.items() if v}, "drain_s": round(drain_s, 2),
            "live_entries_left": server.client.hlen(K.live("bench-mem"))}


def peers(server: Server, *, items: int, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system in ALL:
        if system.name == "symphony" or system.name not in names or system.missing():
            continue
        server.reset()
        m0 = used(server)
        system.prefill(server.url, items, 1, temp_dir("symphony-bench-mem-"))
        out[system.name] = {"items": items, "queued_bytes_per_task": round((used(server) - m0) / items, 1)}
    return out
