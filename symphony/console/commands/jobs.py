"""``symphony jobs SESSION``: the key/values jobs wrote, each job in its own namespace, or the most recent job's."""
from __future__ import annotations

import argparse

from .common import add_verb_options, engine_from_args, fail, print_json, table

HELP = "show the key/values the jobs of a session wrote (--last: the most recent job's)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help=HELP, description=HELP)
    p.add_argument("session")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--last", action="store_true", help="the key/values of the most recent job")
    which.add_argument("--job", metavar="STAGE:ITEM", help="the key/values of one job")
    p.add_argument("--limit", type=int, default=100, help="how many job ids to list (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    add_verb_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        engine.session(args.session)  # an unknown session is an error (exit 2), as for every verb
        if args.last or args.job:
            if args.last:
                job_id, values = engine.last_job(args.session)
                if job_id is None:
                    return fail(f"no job of session {args.session} has written key/values")
            else:
                job_id, values = args.job, engine.job(args.session, args.job)
            if args.json:
                print_json({"session": args.session, "job": job_id, "values": values})
            else:
                print(f"job {job_id} of session {args.session}:")
                table(["KEY", "VALUE"], sorted(values.items()))
            return 0
        jobs = engine.jobs(args.session, args.limit)
    if args.json:
        print_json({"session": args.session, "jobs": jobs})
    else:
        table(["JOB (stage:item)"], [(j,) for j in jobs])
    return 0
