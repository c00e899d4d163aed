"""``symphony queues``: every queue and its length (what ``KEYS *`` showed, without KEYS)."""
from __future__ import annotations

import argparse

from .common import add_verb_options, engine_from_args, print_json, table

HELP = "list every queue (role:session) with its length; flags names clashing with other keys"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("queues", help=HELP, description=HELP)
    p.add_argument("--all", action="store_true", help="include empty queues")
    p.add_argument("--json", action="store_true", help="print as JSON")
    add_verb_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        queues = engine.queues()
    shown = [q for q in queues if args.all or q.length or q.clash]
    if args.json:
        print_json([{**q.__dict__, "clash": q.clash} for q in shown])
        return 0
    table(["QUEUE", "LENGTH", "SESSION STATE", "NOTE"],
          [(q.name, f"{q.length:,}", q.session_state,
            f"CLASH: key is a {q.kind}, not a list" if q.clash else "") for q in shown], right=(1,))
    if not args.all and len(shown) < len(queues):
        print(f"({len(queues) - len(shown)} empty queue(s) hidden; --all shows them)")
    return 0
