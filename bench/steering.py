"""Case 9: what steering costs in the claim itself, measured where other processes hardly matter.

One process claims and reports tasks through ``WorkerLink`` (the worker's own path: a report and
the next claim in one round trip, 32 tasks a claim) until it has done ``tasks``, first from one
session, then from 1,000 sessions at priorities 0, 5 and 10 with ``max_running`` on the stage
(the throughput case's ``steered`` system). Redis's own CPU per task (``INFO commandstats``:
the scripts' time) and the claims per second are reported side by side.
"""
from __future__ import annotations

import time
from typing import Any

from .common import Server, temp_dir


def _drive(server: Server, tasks: int) -> dict[str, Any]:
    from symphony.engine import Engine, Finish, Outcome, OutcomeKind

    with Engine.from_url(server.url) as engine:
        server.client.config_resetstat()
        link = engine.worker_link("bench-claimer", ["b1"])
        pending: list = []
        done = steps = 0
        started = time.perf_counter()
        while done < tasks:
            result = link.step(pending, want=32)
            pending = [Finish(c, Outcome(OutcomeKind.DONE)) for c in result.batch]
            done += len(result.batch)
            steps += 1
            if not result.batch and not result.eligible and result.claimed is None and steps > tasks:
                raise RuntimeError("the queues ran dry before the tasks were done")
        seconds = time.perf_counter() - started
        link.step(pending, claim=False)
    stats = server.client.info("commandstats")
    script_us = sum(row.get("usec", 0) for name, row in stats.items() if name in ("cmdstat_evalsha", "cmdstat_eval"))
    return {"tasks": done, "steps": steps, "seconds": round(seconds, 3), "tasks_per_s": round(done / seconds),
            "redis_script_us_per_task": round(script_us / done, 2)}


def run_one(server: Server, *, tasks: int) -> dict[str, Any]:
    from symphony.engine import Engine, initialize_session, load_session

    from .systems import steered_prefill, write_session

    server.reset()
    with Engine.from_url(server.url) as engine:
        initialize_session(engine, load_session(write_session(temp_dir("symphony-steer-"), "bench", tasks, 1)))
    plain = _drive(server, tasks)
    server.reset()
    steered_prefill(server.url, tasks, 1, temp_dir("symphony-steer-"))
    steered = _drive(server, tasks)
    return {"one_session": plain, "steered": steered,
            "script_us_ratio": round(steered["redis_script_us_per_task"] / plain["redis_script_us_per_task"], 3)}
