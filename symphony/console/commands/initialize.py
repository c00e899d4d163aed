"""``symphony initialize [PATH ...]``: verify session files, then enqueue their items.

Every file is verified first (all problems reported, with file, line and field); a file with
a problem enqueues nothing. Exit status: 0 when everything was sent, 1 when any file failed
verification (the others were sent), 2 when Redis or the configuration is unusable, 130 when
interrupted (it says what was left and how to finish).
"""
from __future__ import annotations

import argparse
import sys

from symphony.engine import RedisUnavailable, SessionSpec, initialize_session, verify_paths

from .common import Progress, add_verb_options, engine_from_args, fail, print_json, print_problems, warn_about_server

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
    p.add_argument("--adopt", action="store_true",
                   help="take over an existing list named like one of the session's queues that no registered "
                        "session owns (lists of the session's own tasks, left when Redis lost its registration, "
                        "are taken back without it)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_verb_options(p)
    p.set_defaults(func=run)


def _interrupted(engine, spec: SessionSpec, progress: Progress, sent: list) -> int:
    """Ctrl-C while enqueueing: say what is registered and queued, and how to finish."""
    first = spec.pipeline.stages[0].name
    queued, registered = f"at least {progress.done:,}", True
    try:
        snap = engine.snapshot(events=0)
        registered = any(s.name == spec.name for s in snap.sessions)
        queue = next((q for q in snap.queues if q.session == spec.name and q.role == first), None)
        if queue is not None:
            queued = f"{queue.enqueued:,}"
    except Exception:  # Redis may be what hung: say what we know
        pass
    done = "".join(f"{r.session}: {r.added:,} item(s) enqueued for {r.stage}\n" for r in sent)
    if not registered:
        sys.stderr.write(done + f"symphony: interrupted before session {spec.name} was registered; nothing of it "
                         "was enqueued\n")
        return 130
    sys.stderr.write(done + f"symphony: interrupted while enqueueing session {spec.name}: it is registered and "
                     f"{queued} of its {len(spec.items):,} items were enqueued for {first} (workers may be running "
                     f"them). To enqueue the rest: symphony initialize --resume {spec.file} (items already queued "
                     f"or running are skipped). To drop it instead: symphony cancel {spec.name}, then symphony "
                     f"purge {spec.name}\n")
    return 130


def _verify(args: argparse.Namespace, engine):
    try:
        return verify_paths(args.paths, engine=engine, resume=args.resume, tasks_dir=args.tasks, adopt=args.adopt)
    except KeyboardInterrupt:
        sys.stderr.write("symphony: interrupted while verifying; nothing was registered or enqueued\n")
        raise


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
        if engine is not None and not args.json:
            warn_about_server(engine)
        report = _verify(args, engine)
        results = []
        if not args.dry_run:
            for spec in report.specs:
                progress = Progress(len(spec.items), f"enqueue {spec.name}")
                try:
                    result = initialize_session(engine, spec, resume=args.resume, adopt_queues=args.adopt,
                                                progress=progress)
                except BaseException as exc:
                    progress.close()  # the bar's line ends before any message
                    if isinstance(exc, KeyboardInterrupt):
                        return _interrupted(engine, spec, progress, results)
                    raise
                progress.close()
                results.append(result)
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
                  + (f", {r.done} already done" if r.done else "")
                  + (f"; {r.resumed} cancelled task(s) enqueued again at the stage they were cancelled at"
                     if r.resumed else ""))
        if report.problems:
            fail(f"{len(report.problems)} problem(s) in {len(report.failed_files)} file(s); "
                 "nothing was enqueued from those files")
    return 1 if report.problems else 0
