"""``symphony acl worker|reader``: the Redis ACL rule of Symphony's worker user or read-only user.

The worker user may touch only Symphony's keys (``symphony:*`` and the queues ``<stage>:*`` of
the stages given, by default every stage of the registered sessions) and run only the commands
workers use; the reader (the console's watch mode, ``symphony status``) may only read them.
The rule is printed as a ``redis-cli`` command line, or applied with ``--apply`` (as an admin).
A password is only ever written as its SHA-256 (``#...``). See docs/security.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from symphony.engine import ConfigError, reader_rules, setuser, setuser_line, worker_rules

from .common import add_verb_options, engine_from_args

HELP = "print (or apply) the ACL rule of Symphony's worker user or read-only user"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("acl", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["worker", "reader"], help="which user")
    p.add_argument("--user", help="the user name (default: symphony-worker / symphony-reader)")
    p.add_argument("--stages", help="comma-separated stages (default: every stage of the registered sessions)")
    p.add_argument("--password-file", metavar="FILE", help="the user's password (written as its SHA-256 only)")
    p.add_argument("--redis6", action="store_true", help="Redis 6.2: no key selectors (%%R~)")
    p.add_argument("--apply", action="store_true", help="run ACL SETUSER on the server (needs an admin user)")
    add_verb_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    user = args.user or f"symphony-{args.kind}"
    password = None
    if args.password_file:
        try:
            password = Path(args.password_file).read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {args.password_file}: {exc.strerror or exc}") from None
    engine = None
    try:
        if args.stages:
            stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        else:
            engine = engine_from_args(args)
            stages = sorted({stage for roles in engine.pools().values() for stage in roles})
            if not stages:
                raise ConfigError("no session is registered yet: name the stages with --stages")
        rules = (worker_rules if args.kind == "worker" else reader_rules)(stages, redis6=args.redis6)
        if args.apply:
            engine = engine or engine_from_args(args)
            nodes = engine.on_every_node(*setuser(user, rules, password=password))
            where = f"{engine.display}, all {nodes} nodes of the cluster" if nodes > 1 else engine.display
            print(f"user {user} set on {where} ({len(stages)} stage(s): {', '.join(stages)})")
            return 0
    finally:
        if engine is not None:
            engine.close()
    if password is None:
        print("# no password given: add one with --password-file FILE (written as #<sha256>), or '>PASSWORD'")
    print("redis-cli " + setuser_line(user, rules, password=password))
    return 0
