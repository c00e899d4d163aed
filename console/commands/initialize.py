"""``symphony initialize [PATH ...]``: verify session files, then enqueue their items."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import SpecError, initialize_session, load_session

from .common import add_redis_args, engine_from_args, fail, print_json

HELP = "verify session files (default: every tasks/*.yaml) and enqueue their items"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("initialize", aliases=["init"], help=HELP, description=HELP)
    p.add_argument("paths", nargs="*", help="session files or directories (default: ./tasks)")
    p.add_argument("--dry-run", action="store_true", help="verify only; enqueue nothing")
    p.add_argument("--resume", action="store_true", help="run a cancelled session again")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_redis_args(p)
    p.set_defaults(func=run)


def session_files(paths: list[str]) -> list[Path]:
    paths = paths or ["tasks"]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return files


def run(args: argparse.Namespace) -> int:
    files = session_files(args.paths)
    if not files:
        return fail("no session files found (looked in: " + ", ".join(args.paths or ["tasks"]) + ")")
    specs, problems = [], []
    for file in files:
        try:
            specs.append(load_session(file))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        return fail(f"{len(problems)} problem(s) found; nothing was enqueued", 1)
    if args.dry_run:
        print(f"{len(specs)} session file(s) verified; nothing enqueued (--dry-run)")
        return 0
    results = []
    with engine_from_args(args) as engine:
        for spec in specs:
            results.append(initialize_session(engine, spec, resume=args.resume))
    if args.json:
        print_json([r.__dict__ for r in results])
    else:
        for r in results:
            print(f"{r.session}: {r.added} item(s) enqueued for {r.stage}"
                  + (f", {r.skipped} already queued or in flight" if r.skipped else "")
                  + (" (session already registered)" if r.registration == "same" else ""))
    return 0
