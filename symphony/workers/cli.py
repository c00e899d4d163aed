"""``symphony-worker``: run worker processes that pull tasks from Symphony's queues."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from symphony.engine import (ConfigError, SymphonyError, add_shared_options, drop_secret_environment, is_name, redact,
                             register_environment_secrets, shared_options)

from .logs import setup_logging
from .options import WorkerOptions
from .process import not_dumpable
from .supervisor import Supervisor

EPILOG = """\
examples:
  symphony-worker --pool windows --processes 4          # a Windows VM of the scan pipeline
  symphony-worker --roles detection --nice 10           # only detection, at low CPU priority
  symphony-worker --burst                               # serve every stage, exit when no work is left
environment (every variable Symphony reads: docs/configuration.md):
  SYMPHONY_REDIS_URL / REDIS_URL, REDIS_PASSWORD, SYMPHONY_REDIS_PASSWORD_FILE / REDIS_PASSWORD_FILE,
  SYMPHONY_REDIS_CA_FILE / REDIS_CA_FILE,
  SYMPHONY_KEY_FILE / SYMPHONY_KEY (AES key: encrypted task data and job values, docs/security.md)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symphony-worker", description="Run worker processes that pull tasks from Symphony's queues.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pool", help="serve the stages of this pool (e.g. windows, linux)")
    which.add_argument("--roles", help="serve these stages (comma-separated; aliases allowed)")
    p.add_argument("--processes", "-n", type=int, default=os.cpu_count() or 1,
                   help="worker processes to run (default: CPU count, %(default)s here)")
    p.add_argument("--name", default="", help="a name for these workers (default: the host name)")
    p.add_argument("--burst", action="store_true", help="exit when no work is left for the served stages")
    p.add_argument("--nice", type=int, default=0, help="lower the CPU priority by this much (e.g. 10)")
    p.add_argument("--heartbeat", type=float, default=5.0, metavar="SECONDS",
                   help="heartbeat interval (default %(default)s)")
    p.add_argument("--lease", type=float, default=None, metavar="SECONDS",
                   help="a worker silent this long is dead and its tasks are reclaimed "
                        "(default 2.5 heartbeats, at least 2)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM/Ctrl-C, finish the current task within this, else hand it back (default %(default)s)")
    p.add_argument("--prefetch", type=int, default=32, metavar="N",
                   help="claim up to N tasks at once while tasks are short (together under 20 ms); "
                        "1 claims one at a time (default %(default)s)")
    p.add_argument("--idle-wait", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--rerun-existing", action="store_true",
                   help="run a stage even if its output already exists (default: existing output means done)")
    p.add_argument("--metrics-interval", type=float, default=30.0, metavar="SECONDS",
                   help="record this host's CPU and memory once per this many seconds, for the console's history "
                        "(one sample per host however many processes run on it; 0 turns it off; default %(default)s)")
    p.add_argument("--wait-for-redis", type=float, default=None, metavar="SECONDS",
                   help="give up (exit 2) when Redis does not answer for this long (default: wait forever; "
                        "with --burst, 30 s; 0: forever)")
    add_shared_options(p, log_level="INFO",
                       key_help="AES key (hex or base64) of encrypted task data and job values (default: "
                                "$SYMPHONY_KEY_FILE, $SYMPHONY_KEY); with a key, only encrypted task data is accepted")
    return p


def options_from_args(args: argparse.Namespace) -> WorkerOptions:
    if args.processes < 1:
        raise ConfigError("--processes must be at least 1")
    if args.prefetch < 1:
        raise ConfigError("--prefetch must be at least 1")
    if args.heartbeat <= 0:
        raise ConfigError("--heartbeat must be positive")
    if args.name and not is_name(args.name):
        raise ConfigError(f"--name {args.name!r} may only contain letters, digits and . _ + @ = , -")
    lease = args.lease if args.lease is not None else 2.5 * args.heartbeat
    if lease < 2 * args.heartbeat:
        # below two heartbeats a live worker whose beat is a little late, or a short Redis outage,
        # would lose its lease (see the grace window in docs/reliability.md)
        raise ConfigError("--lease must be at least twice --heartbeat (default: 2.5 heartbeats)")
    if args.metrics_interval < 0:
        raise ConfigError("--metrics-interval must be 0 (off) or positive")
    roles = tuple(r.strip() for r in (args.roles or "").split(",") if r.strip())
    if args.wait_for_redis is not None and args.wait_for_redis < 0:
        raise ConfigError("--wait-for-redis must be 0 (forever) or positive")
    shared = shared_options(args)
    return WorkerOptions(redis=shared.redis, name=args.name, pool=args.pool, roles=roles,
                         processes=args.processes, burst=args.burst, nice=args.nice, heartbeat_s=args.heartbeat,
                         lease_s=lease, drain_timeout_s=args.drain_timeout, idle_wait_s=args.idle_wait,
                         prefetch=args.prefetch, log_level=shared.log_level, log_format=shared.log_format,
                         skip_existing=not args.rerun_existing, encryption_key=shared.key,
                         metrics_interval_s=args.metrics_interval, give_up_s=args.wait_for_redis)


def forget_secrets_of_this_process() -> bool:
    """The options now hold what the workers need: no secret stays where a child could see it
    (the environment it inherits, the command line its ``sys.argv`` is copied from). True if a
    secret was on the command line."""
    drop_secret_environment()
    scrubbed = [redact(arg) for arg in sys.argv]
    on_command_line = scrubbed != sys.argv
    sys.argv[:] = scrubbed
    if on_command_line:
        logging.getLogger("symphony").warning(
            "the Redis password is on this command line, where ps shows it to every user of this machine; "
            "use --redis-password-file or REDIS_PASSWORD instead")
    return on_command_line


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, "supervisor", args.log_format)
    register_environment_secrets()
    try:
        options = options_from_args(args)
        secret_on_command_line = forget_secrets_of_this_process()
        not_dumpable()
        if options.nice:
            from .priority import lower_priority

            lower_priority(options.nice)  # children inherit it; they do not lower it again
            options = options.but(nice=0)
        return Supervisor(options, secret_on_command_line=secret_on_command_line).run()
    except SymphonyError as exc:
        logging.getLogger("symphony").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
