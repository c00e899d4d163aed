"""Redis ACL rules for Symphony's two kinds of restricted users (docs/security.md).

* **worker**: may touch only Symphony's keys (``symphony:*`` and the queues ``<stage>:*`` of the
  stages it serves) and run only the commands workers use: no ``FLUSHALL``, ``KEYS``, ``SCAN``,
  ``CONFIG``, ``DEBUG``, ``CLIENT KILL`` ... The lists below were measured (``INFO commandstats``
  of real runs) and are checked by the tests against a real server (``ACL LOG`` stays empty).
* **reader**: the console's watch mode and ``symphony status``: read-only commands on the same
  keys, nothing that writes, no scripts.

Lua scripts run with the caller's permissions, and Redis requires read *and* write permission
on every key a script declares, even one it only reads (``symphony:session:*``, the epoch);
so the worker's key patterns are read-write except the two registry keys it reads directly.
The rules use key selectors (``%R~``), which need Redis 7.0 (or Valkey); pass
``redis6=True`` for Redis 6.2, where read-only keys fall back to ``~``.
"""
from __future__ import annotations

import hashlib
import shlex
from typing import Iterable, Sequence

from symphony.spec import role_problem

from .keys import DEFAULT_KEYS, Keys

# Connection set-up (redis-py sends HELLO and CLIENT SETNAME; PING checks health). On a Redis
# Cluster the client also reads the slots' map (CLUSTER SLOTS) and the command table (COMMAND,
# for its key parser) when it starts and after a failover; both only describe the server.
CONNECTION = ("hello", "ping", "client|setname", "cluster|slots", "command")

# Every command a worker process (and its supervisor) sends, directly or from a Lua script.
WORKER_COMMANDS = CONNECTION + (
    "info",  # the version check when a supervisor starts
    "evalsha", "script|load", "multi", "exec", "watch", "unwatch", "time",
    "blpop", "lrange", "llen", "lindex", "lmove", "lpop", "lrem", "lpush", "rpush", "ltrim", "setbit",
    "hget", "hmget", "hgetall", "hkeys", "hset", "hsetnx", "hdel", "hincrby",
    "zadd", "zrem", "zrange", "zrangebyscore", "zremrangebyscore", "zremrangebyrank", "zscore", "zcard",
    "xadd", "get", "set", "incrby", "del", "exists", "expire", "pexpire", "pttl", "type", "sadd",
    "xrevrange", "lpos",  # why a report found its task gone (engine/lost.py), a rare path
    "smembers", "srem", "xdel", "hlen",  # the cluster key layout: the sessions a worker holds tasks in, and their upkeep
    "xrange",  # the registry's changes since the last one a worker saw (engine/following.py)
)

# What the status snapshot and the console's watch mode read (two pipelined round trips), plus
# the read commands an operator's view of a queue or a job uses. No KEYS, no SCAN (ZSCAN walks one ZSET).
READER_COMMANDS = CONNECTION + (
    "evalsha_ro", "script|load",  # the snapshot reads through a read-only script (EVALSHA_RO, Redis 7+)
    "info", "time", "hgetall", "hget", "hmget", "hlen", "zrange", "zrangebyscore", "zscore", "zcard",
    "xrevrange", "xrange", "xlen", "llen", "lrange", "lindex", "get", "pttl", "ttl", "exists", "type",
    "smembers", "scard",
    "zscan",  # the console's sweep of the workers ZSET for the fleet's counts (engine/fleet_view.py)
)


def _ns(keys: Keys) -> str:
    return keys.ns


def queue_patterns(stages: Iterable[str], keys: Keys = DEFAULT_KEYS) -> list[str]:
    """Glob patterns matching the queues ``<stage>:<session>`` of ``stages``."""
    out = []
    for stage in stages:
        problem = role_problem(stage)
        if problem:
            raise ValueError(f"invalid stage name: {problem}")
        pattern = keys.queue(stage, "*")
        if pattern not in out:
            out.append(pattern)
    return out


# Where each of a worker's keys lives: a session's keys keep the namespace prefix (their hash tag
# is the session, inside the name: ``symphony:stats:{block7}``); the fleet's take the prefix of the
# fleet slot (``{symphony}:workers``), which is the namespace itself before the cluster layout.
_SESSION_PARTS = (
    "delayed:*", "stats:*", "live:*", "done:*", "outcomes:*", "session:*", "inflight:*", "holders:*",
    "deadletter", "deadletter:*",  # one list for the fleet, or one per session
    "job:*", "jobs:*", "lastjob:*")
_FLEET_PARTS = (
    "ready:*", "readyv:*", "bell:*", "epoch", "workers", "worker:*", "holds:*", "permits:*", "lock:*", "clock",
    "grace", "results", "events", "metrics:*",  # metrics: host samples from heartbeats
    "origin:*",  # the jobs that wrote key/values from each SLURM job
    "log:*",  # each worker process's recent log lines
    "hosts:*",  # hosts' failure streaks, recent outcomes and quarantines
    "drain",  # a worker that exits drained removes its own entry
    "control:*",  # a stage's running tasks and token bucket, counted by claim, finish and reclaim
    "steering")  # pauses and priorities the claim obeys (a script's declared key: read and write)


def _fleet(keys: Keys) -> str:
    """The prefix of the fleet's keys: ``{symphony}`` in the cluster key layout, else ``symphony``."""
    return getattr(keys, "fleet", None) or keys.ns


def worker_key_patterns(stages: Iterable[str], keys: Keys = DEFAULT_KEYS) -> tuple[list[str], list[str]]:
    """(read-write patterns, read-only patterns) for a worker serving ``stages``."""
    ns, fleet = _ns(keys), _fleet(keys)
    write = [f"{ns}:{part}" for part in _SESSION_PARTS]
    write += [p for p in (f"{fleet}:{part}" for part in _FLEET_PARTS) if p not in write]
    read = [keys.sessions, keys.pools, keys.registry_changes]
    return queue_patterns(stages, keys) + write, read


def worker_rules(stages: Iterable[str], keys: Keys = DEFAULT_KEYS, *, redis6: bool = False) -> list[str]:
    """ACL rules (after ``reset``) for a worker user serving ``stages``."""
    write, read = worker_key_patterns(stages, keys)
    rules = ["resetchannels"] + [f"~{p}" for p in write]
    rules += [("~" if redis6 else "%R~") + p for p in read]
    return rules + ["-@all"] + [f"+{c}" for c in WORKER_COMMANDS]


def reader_rules(stages: Iterable[str], keys: Keys = DEFAULT_KEYS, *, redis6: bool = False) -> list[str]:
    """ACL rules (after ``reset``) for a read-only user: the console's watch mode, ``status``."""
    prefix = "~" if redis6 else "%R~"
    patterns = list(dict.fromkeys([f"{_ns(keys)}:*", f"{_fleet(keys)}:*"])) + queue_patterns(stages, keys)
    # Redis 6.2 has no EVALSHA_RO, and EVALSHA could write: no scripts there (the snapshot reads plainly)
    commands = [c for c in READER_COMMANDS if not (redis6 and c in ("evalsha_ro", "script|load"))]
    return ["resetchannels"] + [prefix + p for p in patterns] + ["-@all"] + [f"+{c}" for c in commands]


def password_hash(password: str) -> str:
    """The form ACL accepts instead of a clear-text password: ``#<sha256 hex>``."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def setuser(user: str, rules: Sequence[str], *, password: str | None = None) -> list[str]:
    """The ``ACL SETUSER`` arguments: start from nothing, enable, set the password (hashed)."""
    args = ["ACL", "SETUSER", user, "reset", "on"]
    if password is not None:
        args.append(password_hash(password))
    return args + list(rules)


def setuser_line(user: str, rules: Sequence[str], *, password: str | None = None) -> str:
    """The same as one shell-quoted ``redis-cli`` command line (the password only as a hash)."""
    return " ".join(shlex.quote(a) for a in setuser(user, rules, password=password))
