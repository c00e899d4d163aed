"""The batch script of a SLURM job that runs ``symphony-worker`` for one pool.

It activates the Python environment Symphony is installed in, names the Redis server (never a
password: the password is read from a file the script names, or taken from the job's
environment, which sbatch copies from the submitting shell), asks SLURM for a warning signal
before the time limit (``--signal=B:USR1@<warning>``) and ``exec``s the worker, so the signal
reaches it directly. ``symphony slurm script`` prints it; ``submit`` and ``adapt`` submit it.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from symphony.engine import ConfigError, RedisConfig, is_name, redact

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
PASSWORD_FILE_VARS = ("SYMPHONY_REDIS_PASSWORD_FILE", "REDIS_PASSWORD_FILE")
KEY_FILE_VAR = "SYMPHONY_KEY_FILE"


def time_limit_s(text: str) -> int:
    """SLURM's time formats: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
    "days-hours:minutes", "days-hours:minutes:seconds"."""
    match = _TIME.match(text.strip())
    if not match:
        raise ConfigError(f"--time {text!r} is not a SLURM time limit (e.g. 30, 04:00:00, 1-12:00:00)")
    days, a, b, c = match.groups()
    values = [int(v) for v in (a, b, c) if v is not None]
    if days is not None:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = (values + [0, 0])[:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(values) == 1:
        return values[0] * 60
    if len(values) == 2:
        return values[0] * 60 + values[1]
    return (values[0] * 60 + values[1]) * 60 + values[2]


def url_without_password(url: str) -> str:
    """``url`` with any password removed (from the user part and from a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}@{host}" if name else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class ScriptOptions:
    pool: str
    tag: str = ""  # default: the pool
    processes: int = 1
    time: str | None = None  # SLURM time limit (--time)
    partition: str | None = None
    account: str | None = None
    mem: str | None = None
    cpus: int | None = None  # default: one per worker process
    sbatch: tuple[str, ...] = ()  # further "#SBATCH" options, each "--name=value"
    job_name: str | None = None
    output: str = "%x-%j.out"
    chdir: str | None = None
    python_env: str = field(default_factory=lambda: sys.prefix)
    prologue: tuple[str, ...] = ()  # shell lines run first (e.g. "module load python")
    burst: bool = False
    warning_s: int = 300
    margin_s: int = 30
    term_grace_s: int = 20
    worker_args: tuple[str, ...] = ()

    @property
    def tag_name(self) -> str:
        return self.tag or self.pool

    def check(self) -> None:
        """Every problem with the options, before anything is submitted."""
        if not is_name(self.pool):
            raise ConfigError(f"--pool {self.pool!r} is not a valid pool name")
        if not is_name(self.tag_name):
            raise ConfigError(f"--tag {self.tag_name!r} may only contain letters, digits and . _ + @ = , -")
        if self.processes < 1:
            raise ConfigError("--processes must be at least 1")
        if self.cpus is not None and self.cpus < 1:
            raise ConfigError("--cpus must be at least 1")
        if self.warning_s < 0 or self.margin_s < 0 or self.term_grace_s < 0:
            raise ConfigError("--warning, --margin and --term-grace must not be negative")
        if self.warning_s and self.margin_s >= self.warning_s:
            raise ConfigError(f"--margin ({self.margin_s}s) must be shorter than --warning ({self.warning_s}s): "
                              "running tasks are handed back --margin seconds before the end, after the warning")
        if self.warning_s > 65535:
            raise ConfigError("--warning can be at most 65535 seconds (SLURM's limit for --signal)")
        if self.time is not None:
            limit = time_limit_s(self.time)
            if self.warning_s >= limit:
                raise ConfigError(f"--warning ({self.warning_s}s) must be shorter than --time ({self.time}, {limit}s)")
        for option in self.sbatch:
            if not option.startswith("-"):
                raise ConfigError(f"--sbatch {option!r}: give a whole sbatch option, e.g. --sbatch=--qos=high")
        for arg in (*self.sbatch, *self.worker_args, *self.prologue):
            if redact(arg) != arg:
                raise ConfigError("a password never goes into a batch script; put it in a file "
                                  "(--redis-password-file) or in the environment (REDIS_PASSWORD)")

    @property
    def drain_timeout_s(self) -> int:
        """How long a stopping worker lets a running task finish: until ``margin_s`` before the
        end once warned; else (no warning asked) the worker's own default."""
        return max(1, self.warning_s - self.margin_s) if self.warning_s else 30


def _redis_lines(config: RedisConfig, password_file: str | None, key_file: str | None) -> tuple[list[str], list[str]]:
    """(comment lines, export lines) that tell the worker where Redis is; never a password."""
    env = os.environ
    password_file = password_file or next((env[v] for v in PASSWORD_FILE_VARS if env.get(v)), None)
    key_file = key_file or env.get(KEY_FILE_VAR) or None
    notes: list[str] = []
    exports: list[str] = []
    if config.password is not None and not password_file:
        notes.append("# Redis: taken from the job's environment (REDIS_URL, REDIS_PASSWORD ...), which sbatch")
        notes.append("# copies from the submitting shell; the password is never written here")
    else:
        exports.append(f"export SYMPHONY_REDIS_URL={shlex.quote(url_without_password(config.url))}")
        if password_file:
            exports.append(f"export REDIS_PASSWORD_FILE={shlex.quote(os.path.abspath(password_file))}")
        if config.ca_file:
            exports.append(f"export REDIS_CA_FILE={shlex.quote(os.path.abspath(config.ca_file))}")
    if key_file:
        exports.append(f"export {KEY_FILE_VAR}={shlex.quote(os.path.abspath(key_file))}")
    return notes, exports


def _activation(python_env: str) -> list[str]:
    env = os.path.abspath(python_env)
    quoted = shlex.quote(env)
    activate = os.path.join(env, "bin", "activate")
    lines = [f'if [ ! -d {quoted} ]; then echo "symphony: the Python environment {env} does not exist on '
             f'$(hostname)" >&2; exit 2; fi']
    if os.path.isfile(activate) or not os.path.isdir(env):
        lines.append(f"source {shlex.quote(activate)}  # the Python environment Symphony is installed in")
    else:  # a conda environment or a plain prefix: its bin/ first on PATH
        lines.append(f'export PATH={shlex.quote(os.path.join(env, "bin"))}:"$PATH"  # the Python environment Symphony is installed in')
    lines.append('command -v symphony-worker >/dev/null || { echo "symphony: symphony-worker is not installed in '
                 f'{env}" >&2; exit 2; }}')
    return lines


def render(options: ScriptOptions, config: RedisConfig, *, password_file: str | None = None,
           key_file: str | None = None) -> str:
    """The batch script (text) for ``options``; ``config`` says where Redis is."""
    options.check()
    tag = options.tag_name
    directives = [f"--job-name={options.job_name or f'symphony-{tag}'}", "--ntasks=1",
                  f"--cpus-per-task={options.cpus or options.processes}", f"--output={options.output}"]
    if options.time:
        directives.append(f"--time={options.time}")
    if options.warning_s:
        directives.append(f"--signal=B:USR1@{options.warning_s}")
    for name in ("partition", "account", "mem", "chdir"):
        value = getattr(options, name)
        if value:
            directives.append(f"--{name}={value}")
    directives += list(options.sbatch)
    notes, exports = _redis_lines(config, password_file, key_file)
    worker = ["symphony-worker", "--pool", options.pool, "--processes", str(options.processes),
              "--drain-timeout", str(options.drain_timeout_s)]
    if options.burst:
        worker.append("--burst")
    worker += list(options.worker_args)
    walltime = [f"export SYMPHONY_SLURM_TAG={shlex.quote(tag)}",
                f"export SYMPHONY_JOB_WARNING={options.warning_s} SYMPHONY_JOB_MARGIN={options.margin_s} "
                f"SYMPHONY_JOB_TERM_GRACE={options.term_grace_s}"]
    if options.time:
        walltime.append(f"export SYMPHONY_JOB_END=$(( $(date +%s) + {time_limit_s(options.time)} ))"
                        "  # the time limit counts from the job's start")
    for directive in directives:
        if any(c.isspace() for c in directive):
            raise ConfigError(f"sbatch option {directive!r} contains white space, which a #SBATCH line cannot carry")
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives),
             f"# A Symphony worker for pool {options.pool} (symphony slurm script). On SLURM's warning",
             f"# (SIGUSR1, {options.warning_s}s before the time limit) it stops claiming tasks, lets running ones",
             f"# finish until {options.margin_s}s before the end, hands back the rest and exits.",
             *notes, *options.prologue, *_activation(options.python_env), *exports, *walltime,
             "exec " + " ".join(shlex.quote(a) for a in worker), ""]
    return "\n".join(lines)
