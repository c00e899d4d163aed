"""``symphony status``: queues, sessions, workers and recent events, as a table or JSON."""
from __future__ import annotations

import argparse
import os
import tempfile

from symphony.engine import Snapshot

from .. import fmt
from .common import add_verb_options, engine_from_args, print_json, table

HELP = "show queues, workers and recent events (table, --json, or --export FILE)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=HELP)
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON (docs/status-json.md)")
    p.add_argument("--export", metavar="FILE", help="write the JSON snapshot to FILE (atomically)")
    p.add_argument("--events", type=int, default=20, help="how many recent events to include (default %(default)s)")
    add_verb_options(p)
    p.set_defaults(func=run)


def export_snapshot(snapshot: Snapshot, path: str) -> str:
    """Write the snapshot JSON to ``path`` via a temporary file and a rename; return the path."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".snapshot-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(snapshot.to_json())
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise
    return path


def print_snapshot(snap: Snapshot) -> None:
    print(f"Redis {snap.redis}   sessions {len(snap.sessions)}   queues {len(snap.queues)}   "
          f"workers {len(snap.workers)}" + (f"   (grace window {snap.grace_s:.0f}s)" if snap.grace_s else ""))
    print()
    table(["QUEUE", "QUEUED", "RETRY", "IN FLIGHT", "DONE", "FAILED", "TIMED OUT", "CANCELLED"],
          [(q.name, q.queued, q.delayed, q.in_flight, q.completed, q.failed, q.timed_out, q.cancelled)
           for q in snap.queues], right=range(1, 8))
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
        path = export_snapshot(snap, args.export)
        print(f"snapshot written to {path}")
    if args.json:
        print_json(snap.to_dict())
    elif not args.export:
        print_snapshot(snap)
    return 0
