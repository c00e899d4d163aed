"""``symphony demo``: the live sample pipeline without the console (a status line per second)."""
from __future__ import annotations

import argparse
import time

from symphony.engine import Engine, shared_options

from .common import add_verb_options

HELP = "run the sample pipeline on an embedded Redis and print its progress (the TUI: symphony-tui --demo)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    p.add_argument("--seconds", type=float, default=None, help="seconds each stage takes per item")
    p.add_argument("--processes", type=int, default=2, help="worker processes per pool (default %(default)s)")
    add_verb_options(p)  # --redis URL: use this Redis instead of an embedded one
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import Demo, Ended, catch_endings

    catch_endings()  # SIGTERM and SIGHUP (the terminal closed) stop everything the demo started
    try:
        options = shared_options(args, client_name="symphony-demo")
        return _watch(Demo(options=options, processes=args.processes, seconds=args.seconds))
    except Ended as ended:
        return 128 + ended.signum


def _watch(demo) -> int:  # noqa: ANN001
    with demo:
        print(f"demo: Redis at {demo.config.display}, session {demo.spec.name}, "
              f"{len(demo.spec.items)} items, workers for pools {', '.join(demo.spec.pipeline.pools())}")
        with Engine(demo.config) as engine:
            try:
                while True:
                    snap = engine.snapshot(events=0)
                    session = snap.sessions[0]
                    queues = "  ".join(f"{q.role} {q.queued}/{q.in_flight}/{q.completed}" for q in snap.queues)
                    print(f"{session.completed:>3}/{session.items} done   {queues}   (queued/in flight/done)")
                    if session.completed + session.failed + session.timed_out >= session.items:
                        print("demo: every item went through every stage")
                        return 0
                    time.sleep(1)
            except KeyboardInterrupt:
                return 130
