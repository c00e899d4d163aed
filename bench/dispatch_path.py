"""The worker's per-task path without the queue's round trip: claimed tasks through the dispatcher
(prepare, the executor or an inline call, conclude) in one process, against a plain loop of the
same task.

    python -m bench.dispatch_path                    # batches of 32, the executor and inline
    python -m bench.dispatch_path --batch 1 --tasks 3000

A session of no-op tasks (``bench.noop:symphony_task``: one INCR) is registered in a Redis this
tool starts; its messages are decoded as a claim would (``WorkerLink._decode``) and run by a
real :class:`~symphony.workers.dispatch.Dispatcher` and executor, batch after batch, with no
claim and no report in between. Printed: tasks/s, and the CPU per task of this (worker) process
and of its executor, beside a loop that calls the task directly. The ratio to the plain loop is
the cost of everything between a claim's reply and a report's arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import psutil

from .common import Server, bench_env, remove_temp_dirs, temp_dir
from .noop import bump
from .systems import write_session


def _claims(engine, session: str, stage: str, count: int):
    from symphony.engine import Task, WorkerLink

    return [WorkerLink._decode(Task(session, stage, f"i{n:07d}", 0, ordinal=n).encode(), stage, session)
            for n in range(count)]


def run(isolation: str, batch: int, tasks: int, rounds: int) -> list[dict]:
    from symphony.engine import Engine, initialize_session, load_session, without_secret_environment
    from symphony.workers.dispatch import Dispatcher
    from symphony.workers.executor import Executor
    from symphony.workers.options import WorkerOptions
    from symphony.workers.stopping import Stopping

    from . import noop

    server = Server()
    noop._client = None  # this run's Redis
    out = []
    try:
        os.environ.update(bench_env(server.url))
        workdir = temp_dir("symphony-dispatch-")
        spec = load_session(write_session(workdir, "bench", batch, 1,
                                          isolation="inline" if isolation == "inline" else None))
        engine = Engine.from_url(server.url)
        initialize_session(engine, spec)
        executor = Executor(without_secret_environment())
        dispatcher = Dispatcher(engine, WorkerOptions(), executor, Stopping())
        claims = _claims(engine, "bench", "b1", batch)
        reports = []

        def go(n: int) -> None:
            for _ in range(n):
                dispatcher.run(claims, reports.append)
                if len(reports) > 10 * batch:
                    reports.clear()

        go(max(1, 200 // batch))  # the executor started, the handler imported
        batches = max(1, tasks // batch)
        for _ in range(rounds):
            me = psutil.Process()
            ex = psutil.Process(executor.pid) if executor.pid else None
            c0, e0, t0 = me.cpu_times(), ex.cpu_times() if ex else None, time.perf_counter()
            go(batches)
            took = time.perf_counter() - t0
            c1, e1 = me.cpu_times(), ex.cpu_times() if ex else None
            n = batches * batch
            worker_us = (c1.user + c1.system - c0.user - c0.system) / n * 1e6
            exec_us = (e1.user + e1.system - e0.user - e0.system) / n * 1e6 if ex else 0.0
            t0 = time.perf_counter()
            for _ in range(n):
                bump()
            plain = n / (time.perf_counter() - t0)
            out.append({"isolation": isolation, "batch": batch, "rate": round(n / took), "plain_rate": round(plain),
                        "ratio": round(n / took / plain, 3), "worker_us": round(worker_us, 1),
                        "executor_us": round(exec_us, 1)})
            print(json.dumps(out[-1]), flush=True)
        executor.close()
        engine.close()
    finally:
        server.close()
        remove_temp_dirs()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dispatch_path", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tasks", type=int, default=10_000, help="tasks per measurement (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--isolation", default="executor,inline")
    args = p.parse_args(argv)
    for isolation in args.isolation.split(","):
        run(isolation, args.batch, args.tasks, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
