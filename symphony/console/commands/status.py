"""``symphony status``: queues, sessions, workers and recent events, as a table or JSON."""
from __future__ import annotations

import argparse

from symphony.engine import Snapshot

from .. import fmt
from .common import add_verb_options, engine_from_args, print_json, table
from .sessions import print_sessions

HELP = "show queues, workers and recent events (table, --json, or --export FILE)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=HELP)
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON (docs/status-json.md)")
    p.add_argument("--export", metavar="FILE", help="write the JSON snapshot to FILE (atomically)")
    p.add_argument("--events", type=int, default=20, help="how many recent events to include (default %(default)s)")
    add_verb_options(p)
    p.set_defaults(func=run)


def print_server(snap: Snapshot) -> None:
    """Which server, and every problem its settings mean for Symphony, in words."""
    server = snap.server
    what = f"{server.display}, {server.settings}" if server is not None else "unknown server"
    print(f"Redis {snap.redis}: {what}   sessions {len(snap.sessions)}   queues {len(snap.queues)}   "
          f"workers {len(snap.workers)}" + (f"   (grace window {snap.grace_s:.0f}s)" if snap.grace_s else ""))
    for problem in server.problems if server is not None else ():
        print(f"PROBLEM: {problem}")


def print_steering(snap: Snapshot) -> None:
    """The stages with a limit or a rate, and the drains (docs/control.md), when there are any."""
    steered = [c for c in snap.stages if c.max_running is not None or c.rate]
    if steered:
        print()
        table(["STAGE", "RUNNING", "MAX RUNNING", "RATE"],
              [(c.stage, c.running, "-" if c.max_running is None else c.max_running, c.rate or "-") for c in steered],
              right=(1, 2))
    if snap.drains:
        print()
        table(["DRAINED", "NOW", "IDLE", "BY"],
              [(f"{d.kind} {d.target}", "yes" if d.now else "no", "yes" if d.idle else "no", d.by) for d in snap.drains])


def print_snapshot(snap: Snapshot) -> None:
    print_server(snap)
    print()
    if snap.sessions:
        print_sessions(snap.sessions)
        print()
    table(["QUEUE", "QUEUED", "RETRY", "IN FLIGHT", "DONE", "FAILED", "TIMED OUT", "CANCELLED"],
          [(q.name, q.queued, q.delayed, q.in_flight, q.completed, q.failed, q.timed_out, q.cancelled)
           for q in snap.queues], right=range(1, 8))
    print_steering(snap)
    print()
    table(["WORKER", "HOST", "PID", "POOL", "STATE", "CURRENT", "FOR", "BEAT", "CPU", "MEM"],
          [(w.name, w.host, w.pid, w.pool or "-", w.state, w.current or "-", fmt.age(w.current_age_s),
            fmt.age(w.heartbeat_age_s), fmt.percent(w.cpu_percent), fmt.percent(w.memory_percent)) for w in snap.workers],
          right=(2, 6, 7, 8, 9))
    if snap.events:
        print()
        table(["EVENT", "SESSION", "STAGE", "ITEM", "DETAIL"],
              [(e.kind, e.session or "-", e.stage or "-", e.item or "-", (e.message or "")[:80]) for e in snap.events])


def run(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        snap = engine.snapshot(events=args.events)
    if args.export:
        print(f"snapshot written to {snap.write(args.export)}")
    if args.json:
        print_json(snap.to_dict())
    elif not args.export:
        print_snapshot(snap)
    return 0
