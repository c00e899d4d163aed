"""``symphony``: the operator's command line."""
from __future__ import annotations

import argparse
import sys

import redis

from symphony.engine import (SymphonyError, add_shared_options, configure_logging, redact, redis_problem,
                             resolve_redis)

from . import (acl, completion, control, demo, deploy, initialize, jobs, logs, metrics, queues, records, repair, scale,
               sessions, slurm, status, update)

VERBS = (status, sessions, control, queues, initialize, repair, update, jobs, logs, records, demo, metrics, acl, slurm,
         deploy, scale, completion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symphony", description="Operate Symphony pipelines on Redis.",
                                     epilog="Run 'symphony VERB --help' for the options of each verb. "
                                            "The Redis, encryption and logging options may come before the verb "
                                            "or after it.")
    add_shared_options(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        verb.register(sub)
    return parser


def _display(args: argparse.Namespace) -> str:
    try:
        return resolve_redis(getattr(args, "redis", None), url_file=getattr(args, "redis_url_file", None)).display
    except SymphonyError:
        return "(unknown)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except SymphonyError as exc:
        sys.stderr.write(f"symphony: {redact(exc)}\n")
        return 2
    except redis.RedisError as exc:  # refused credentials, unreachable, TLS, an ACL refusal: one clear line
        sys.stderr.write(f"symphony: {redact(redis_problem(exc, _display(args)))}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
