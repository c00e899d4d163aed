"""``symphony repair SESSION``: enqueue exactly what each item is missing, from the outputs on disk.

For every item, the furthest stage whose output exists says where it is; the next stage is
enqueued unless the item is already queued or running. Each stage's output directory is read
once. Running it twice enqueues nothing the second time; it works after Redis lost everything
(the session file is found in --tasks by its name).
"""
from __future__ import annotations

import argparse

from .common import Progress, add_verb_options, engine_from_args, print_json, table, warn_about_server

HELP = "enqueue what each item of a session is missing, judging by the outputs on disk"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repair", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="the session's name")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    p.add_argument("--retry-failed", action="store_true",
                   help="also enqueue items whose last attempt failed or timed out (default: report them)")
    p.add_argument("--json", action="store_true", help="print the plan (and result) as JSON")
    p.add_argument("--items", action="store_true", help="with --json: list the items of each stage")
    p.add_argument("--tasks", default="tasks", metavar="DIR", help="where to find the session file (default %(default)s)")
    p.add_argument("--file", metavar="PATH", help="the session file (default: the one Redis remembers, or --tasks)")
    p.add_argument("--resume", action="store_true", help="repair a cancelled session (it becomes active again)")
    p.add_argument("--adopt", action="store_true",
                   help="when Redis lost the session's registration, take over a list named like one of its queues "
                        "even if its messages are not the session's own tasks (those are taken back without it)")
    add_verb_options(p)
    p.set_defaults(func=run)


def print_plan(plan) -> None:
    print(f"session {plan.session} ({plan.file}): {plan.total:,} items, {plan.complete:,} complete, "
          f"{plan.in_progress:,} queued or running (left alone), {plan.failed:,} failed last time"
          + (" (retried)" if plan.retry_failed else " (not retried; use --retry-failed)")
          + ("" if plan.registered else "; Redis did not know this session: it will be registered again"))
    if plan.lost:
        print(f"{plan.lost:,} item(s) were in progress in Redis but their task message is gone (a queue or an "
              "in-flight list was lost): they are enqueued again, at the stage their outputs on disk say")
    if plan.relisted:
        print(f"{plan.relisted:,} queued or running task(s) had lost their live entry: it is restored (no duplicate)")
    if plan.where is not None and plan.where.unregistered:
        print(f"{len(plan.where.unregistered):,} unregistered worker(s) hold tasks: they get a lease (a live worker "
              "renews it, a dead one's tasks are reclaimed when it lapses)")
    if plan.where is not None and plan.where.unready:
        print("queued tasks no worker can find (the stage's ready set lost the session) are announced again: "
              + ", ".join(plan.where.unready))
    if plan.counters_off:
        print("counters that disagree with the queues, in-flight lists or outputs on disk are recounted: "
              + ", ".join(plan.counters_off))
    rows = []
    for stage in plan.stages:
        why = ", ".join(f"{n:,} {reason}" for reason, n in stage.reasons.items()) or "-"
        rows.append((stage.stage, f"{stage.count:,}", why))
    table(["STAGE", "TO ENQUEUE", "WHY"], rows, right=(1,))
    print(f"plan: {plan.to_enqueue:,} task(s); directories listed in {plan.listing_s:.2f}s, planned in {plan.planning_s:.2f}s")


def run(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        if not args.json:
            warn_about_server(engine)
        plan = engine.plan_repair(args.session, retry_failed=args.retry_failed, tasks_dir=args.tasks, file=args.file)
        result = None
        if not args.dry_run and plan.needs_applying:
            progress = Progress(plan.to_enqueue, f"repair {plan.session}")
            try:
                result = engine.repair(plan, resume=args.resume, adopt=args.adopt, progress=progress)
            finally:
                progress.close()
    if args.json:
        data = plan.to_dict(items=args.items)
        if result is not None:
            data["enqueued"] = dict(result.enqueued)
            data["skipped"] = result.skipped
        print_json(data)
        return 0
    print_plan(plan)
    if args.dry_run:
        print("nothing enqueued (--dry-run)")
    elif result is None or not result.total:
        print("nothing to enqueue" + (" (Redis' state healed)" if result is not None else ""))
    else:
        print(f"enqueued {result.total:,} task(s): " + ", ".join(f"{k} {v:,}" for k, v in result.enqueued.items())
              + (f"; {result.skipped:,} became queued or running meanwhile and were skipped" if result.skipped else ""))
    return 0
