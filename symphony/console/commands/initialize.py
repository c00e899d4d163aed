"""``symphony initialize [PATH ...]``: verify session files, then enqueue their items.

Every file is verified first (all problems reported, with file, line and field); a file with
a problem enqueues nothing. Exit status: 0 when everything was sent, 1 when any file failed
verification (the others were sent), 2 when Redis or the configuration is unusable.
"""
from __future__ import annotations

import argparse

from symphony.engine import RedisUnavailable, initialize_session, verify_paths

from .common import Progress, add_redis_args, engine_from_args, fail, print_json, print_problems

HELP = "verify session files (default: every tasks/*.yaml), then enqueue their items"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("initialize", aliases=["init"], help=HELP, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", help="session files or directories (default: tasks/)")
    p.add_argument("--tasks", default="tasks", metavar="DIR", help="the default directory (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="verify only; enqueue nothing")
    p.add_argument("--resume", action="store_true",
                   help="accept a session that is already active or was cancelled; only what is not "
                        "queued or running yet is enqueued")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_redis_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engine = engine_from_args(args)
    try:
        try:
            engine.ping()
        except RedisUnavailable as exc:
            if not args.dry_run:
                raise
            print_problems([], [f"{exc}; the checks that need Redis (session already active, queue clashes) were skipped"])
            engine = None
        report = verify_paths(args.paths, engine=engine, resume=args.resume, tasks_dir=args.tasks)
        results = []
        if not args.dry_run:
            for spec in report.specs:
                progress = Progress(len(spec.items), f"enqueue {spec.name}")
                try:
                    results.append(initialize_session(engine, spec, resume=args.resume, progress=progress))
                finally:
                    progress.close()
    finally:
        if engine is not None:
            engine.close()
    if args.json:
        data = report.to_dict()
        data["sent"] = [r.__dict__ for r in results]
        print_json(data)
    else:
        print_problems(report.problems, report.warnings)
        for spec in report.specs:
            if args.dry_run:
                print(f"{spec.file}: session {spec.name} verified ({len(spec.items)} items); nothing enqueued (--dry-run)")
        for r in results:
            print(f"{r.session}: {r.added} item(s) enqueued for {r.stage}"
                  + (f", {r.skipped} already queued or in flight" if r.skipped else "")
                  + (f", {r.done} already done" if r.done else ""))
        if report.problems:
            fail(f"{len(report.problems)} problem(s) in {len(report.failed_files)} file(s); "
                 "nothing was enqueued from those files")
    return 1 if report.problems else 0
