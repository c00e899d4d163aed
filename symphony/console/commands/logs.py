"""``symphony logs WORKER [--follow]``: a worker process's recent log lines, from Redis."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime

from symphony.engine import redact

from .common import add_verb_options, engine_from_args, fail

HELP = "print a worker process's recent log lines (kept in Redis while it runs, and a minute after)"
FOLLOW_EVERY_S = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help=HELP, description=HELP + ". WORKER is a worker id (symphony status lists "
                                                             "them), or the start of one, or a worker name.")
    p.add_argument("worker", metavar="WORKER")
    p.add_argument("-n", "--lines", type=int, default=100, help="how many of the last lines (default %(default)s)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines as they come (Ctrl-C stops)")
    p.add_argument("--json", action="store_true", help="one JSON object a line (at_ms, level, message)")
    add_verb_options(p)
    p.set_defaults(func=run)


def _resolve(engine, wanted: str) -> tuple[str | None, str]:
    """(worker id, '') or (None, why not)."""
    workers = engine.snapshot(events=1).workers
    if any(w.id == wanted for w in workers) or engine.worker_log(wanted, 1):
        return wanted, ""
    matches = sorted({w.id for w in workers if w.id.startswith(wanted) or w.name == wanted})
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        return None, f"{wanted!r} matches {len(matches)} workers: {', '.join(matches[:10])}; name one of them"
    return None, (f"no worker {wanted!r} is registered, and no log of it is kept (a worker's log lives as long as "
                  "the worker, and about a minute after); 'symphony status' lists the workers")


def _print(lines, as_json: bool) -> None:
    for line in lines:
        if as_json:
            sys.stdout.write(redact(json.dumps({"at_ms": line.at_ms, "level": line.level, "message": line.message}))
                             + "\n")
        else:
            when = datetime.fromtimestamp(line.at_ms / 1000).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            sys.stdout.write(f"{when} {line.level:<7} {line.message}\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    if args.lines < 1:
        return fail("--lines must be at least 1", 2)
    with engine_from_args(args) as engine:
        worker, problem = _resolve(engine, args.worker)
        if worker is None:
            return fail(problem, 2)
        lines = engine.worker_log(worker, args.lines)
        _print(lines, args.json)
        if not args.follow:
            return 0
        last = lines[-1].id if lines else "0-0"
        try:
            while True:
                time.sleep(FOLLOW_EVERY_S)  # the pace of the polling: one small read per interval
                new = engine.worker_log(worker, 1000, after=last)
                if new:
                    _print(new, args.json)
                    last = new[-1].id
        except KeyboardInterrupt:
            return 0
