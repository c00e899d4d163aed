"""``symphony update SESSION``: apply an edited session or pipeline file to a registered session.

A session runs the definition it was registered with: editing its files afterwards changes
nothing by itself (``retry`` warns about it). ``update`` verifies the file, shows what differs
from the registered definition, asks, and replaces it when the change is compatible: the same
stages in the same order, each in the same pool with the same output template and aliases, the
same data root and input template. Handlers and commands, timeouts, attempts, backoff and
parameters may change. Workers use the new definition for every task they start from their next
heartbeat on; tasks already running finish with the old one. Then 'symphony retry SESSION' runs
the failed tasks again with it.

Exit status: 0 updated (or nothing to update), 1 the file has problems or the answer was no,
2 the change is not compatible, or Redis or the configuration is unusable. Nothing changes
unless the status is 0.
"""
from __future__ import annotations

import argparse

from symphony.engine import Comparison, SpecError, compare_definitions, redact, verify_paths

from .common import add_verb_options, confirm, engine_from_args, fail, print_json, print_problems

HELP = "apply an edited session or pipeline file to a registered session (shows the differences, then asks)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("update", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="the session's name")
    p.add_argument("--file", metavar="PATH", help="the session file (default: the one it was registered from, or --tasks)")
    p.add_argument("--tasks", default="tasks", metavar="DIR", help="where to find the session file (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="show the differences only")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print the differences (and the result) as JSON")
    add_verb_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        registered, state = engine.session(args.session)
        try:
            spec = engine.session_spec(args.session, tasks_dir=args.tasks, file=args.file)
            report = verify_paths([spec.file])
            problems, warnings = report.problems, report.warnings
        except SpecError as exc:
            problems, warnings = exc.problems, ()
        if problems:
            print_problems(problems, warnings)
            return fail(f"{len(problems)} problem(s) in the session's files; the registered definition of "
                        f"{args.session} is unchanged")
        record = report.specs[0].record()
        comparison = compare_definitions(registered, record)
        if not args.json:
            _print_changes(args.session, spec.file, comparison)
        updated = False
        if comparison.changes and comparison.compatible and not args.dry_run:
            if not confirm(f"Update the definition of session {args.session} ({state})?", args.yes):
                return 1
            engine.update_definition(record, expected=registered)
            updated = True
    if args.json:
        print_json({"session": args.session, "file": spec.file, "compatible": comparison.compatible,
                    "updated": updated, "changes": [{"path": c.path, "old": c.old, "new": c.new, "allowed": c.allowed,
                                                     "why": c.why} for c in comparison.changes]})
        return 0 if comparison.compatible else 2
    if not comparison.compatible:
        return fail(f"session {args.session} cannot take this change ("
                    + "; ".join(c.why for c in comparison.blockers) + "); nothing was updated. Give the file "
                    f"another session name, or 'symphony purge {args.session}' and initialize it again", 2)
    if args.dry_run and comparison.changes:
        print("nothing updated (--dry-run)")
    elif updated:
        print(f"session {args.session}: definition updated; workers use it for the tasks they start from their "
              f"next heartbeat on. To run the failed tasks again with it: symphony retry {args.session}")
    return 0


def _print_changes(session: str, file: str, comparison: Comparison) -> None:
    if comparison.same:
        print(f"session {session}: {file} says what is registered; nothing to update")
        return
    print(f"session {session}: {file} differs from the registered definition:")
    for change in comparison.changes:
        print(redact(f"  {change}"))
