"""``symphony-worker``: run worker processes that pull tasks from Symphony's queues."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from symphony.engine import (SHARED_ENVIRONMENT, ConfigError, SymphonyError, add_shared_options,
                             drop_secret_environment, is_name, parse_with_config, redact,
                             register_environment_secrets, secret_file_problem, shared_options, store_variables)

from .logs import setup_logging
from .options import WorkerOptions
from .process import not_dumpable
from .supervisor import Supervisor

EPILOG = """\
examples:
  symphony-worker --pool windows --processes 4          # a Windows VM of the scan pipeline
  symphony-worker --roles detection --nice 10           # only detection, at low CPU priority
  symphony-worker --burst                               # serve every stage, exit when no work is left
configuration (docs/configuration.md): every option also comes from a TOML file (--config FILE, or
  $SYMPHONY_WORKER_CONFIG; keys are the long options: pool = "linux", drain-timeout = 60) and from
  $SYMPHONY_WORKER_<OPTION> variables (SYMPHONY_WORKER_PROCESSES=4); the command line beats the
  environment, which beats the file.
environment (every variable Symphony reads: docs/configuration.md):
  SYMPHONY_REDIS_URL / SYMPHONY_REDIS_URL_FILE / REDIS_URL, REDIS_PASSWORD, SYMPHONY_REDIS_PASSWORD_FILE / REDIS_PASSWORD_FILE,
  SYMPHONY_REDIS_CA_FILE / REDIS_CA_FILE,
  SYMPHONY_KEY_FILE / SYMPHONY_KEY (AES key: encrypted task data and job values, docs/security.md)
  AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN
  (outputs in Azure Blob Storage, docs/storage.md; never passed to handlers)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symphony-worker", description="Run worker processes that pull tasks from Symphony's queues.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE",
                   help="read options from this TOML file (default: $SYMPHONY_WORKER_CONFIG); flags and "
                        "$SYMPHONY_WORKER_<OPTION> variables beat it")
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
                   help="claim up to N tasks at once while tasks are short (together under 10 ms); "
                        "1 claims one at a time (default %(default)s)")
    p.add_argument("--idle-wait", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--policy-check", type=float, default=60.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--rerun-existing", action="store_true",
                   help="run a stage even if its output already exists (default: existing output means done)")
    p.add_argument("--metrics-interval", type=float, default=30.0, metavar="SECONDS",
                   help="record this host's CPU and memory once per this many seconds, for the console's history "
                        "(one sample per host however many processes run on it; 0 turns it off; default %(default)s)")
    p.add_argument("--scratch-dir", default=None, metavar="DIR",
                   help="where a task's input and output are staged when outputs live in an object store or are "
                        "encrypted (default: the system's temporary folder, symphony-scratch)")
    p.add_argument("--scratch-limit", type=float, default=0, metavar="MB",
                   help="the largest input or output one task may stage, in MB; larger ones fail the task "
                        "with the reason (default: no limit)")
    p.add_argument("--wait-for-redis", type=float, default=None, metavar="SECONDS",
                   help="give up (exit 2) when Redis does not answer for this long (default: wait forever; "
                        "with --burst, 30 s; 0: forever)")
    p.add_argument("--scheduled-events", default="", metavar="URL",
                   help="watch Azure Scheduled Events at this URL (on an Azure VM: "
                        "http://169.254.169.254/metadata/scheduledevents): before a Preempt, Terminate or Reboot "
                        "of this VM, stop claiming, hand tasks back, acknowledge the event and exit "
                        "(default: off)")
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
    if args.scratch_limit < 0:
        raise ConfigError("--scratch-limit must be 0 (no limit) or positive")
    if args.wait_for_redis is not None and args.wait_for_redis < 0:
        raise ConfigError("--wait-for-redis must be 0 (forever) or positive")
    shared = shared_options(args)
    return WorkerOptions(redis=shared.redis, name=args.name, pool=args.pool, roles=roles,
                         processes=args.processes, burst=args.burst, nice=args.nice, heartbeat_s=args.heartbeat,
                         lease_s=lease, drain_timeout_s=args.drain_timeout, idle_wait_s=args.idle_wait,
                         policy_check_s=args.policy_check,
                         prefetch=args.prefetch, log_level=shared.log_level, log_format=shared.log_format,
                         skip_existing=not args.rerun_existing, encryption_key=shared.key,
                         metrics_interval_s=args.metrics_interval, give_up_s=args.wait_for_redis,
                         scratch_dir=args.scratch_dir, scratch_limit_bytes=int(args.scratch_limit * 1e6),
                         store_env=tuple(sorted(store_variables().items())),
                         accept_eviction=shared.accept_eviction,
                         scheduled_events_url=args.scheduled_events.strip())


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


ENV_PREFIX = "SYMPHONY_WORKER_"


def parse(argv: list[str] | None = None, env=None) -> argparse.Namespace:
    """The command line over the environment over the ``--config`` file (ConfigError if one is bad)."""
    return parse_with_config(build_parser(), argv, env_prefix=ENV_PREFIX, env=env)


def _warn_about_open_secret_files(args: argparse.Namespace) -> None:
    import os

    files = {"redis_password_file": SHARED_ENVIRONMENT["redis_password_file"],
             "redis_url_file": SHARED_ENVIRONMENT["redis_url_file"], "encryption_key_file": ("SYMPHONY_KEY_FILE",)}
    for dest, names in files.items():
        path = getattr(args, dest, None) or next((os.environ[n] for n in names if os.environ.get(n)), None)
        problem = secret_file_problem(path)
        if problem:
            logging.getLogger("symphony").warning("%s", problem)


def main(argv: list[str] | None = None) -> int:
    register_environment_secrets()
    try:
        args = parse(argv)
    except ConfigError as exc:
        sys.stderr.write(f"symphony-worker: {redact(exc)}\n")
        return 2
    setup_logging(args.log_level, "supervisor", args.log_format)
    if args.config or args.option_sources:
        logging.getLogger("symphony").info(
            "configuration: %s%s", f"file {args.config}" if args.config else "no file",
            "".join(f"; {s.option} from {s.where}" for s in args.option_sources if not s.where.startswith(str(args.config))))
    _warn_about_open_secret_files(args)
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
