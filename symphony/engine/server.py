"""What kind of Redis server Symphony is on, and whether its settings can destroy Symphony's state.

Read from ``INFO server`` and ``INFO memory`` (``maxmemory_policy`` is in ``INFO memory``, so no
``CONFIG GET`` is needed and a restricted ACL user works); a user that may not run ``INFO`` gets
"unknown" instead of an error. The status snapshot carries the same facts (``Snapshot.server``)
at no extra round trip.

Eviction: under ``allkeys-*`` policies Redis deletes any key when it reaches ``maxmemory``
(queues, sessions, in-flight lists: work is lost or runs twice); under ``volatile-*`` it deletes
keys that have a TTL, which Symphony gives to worker descriptions, the reaper's lock, the grace
window, the jobs' key/values and the metrics series. With ``noeviction`` nothing is deleted, but
a full server refuses writes: no task can be claimed or finished until memory is freed.

Whether it refuses writes now follows Redis's own rule on the ``INFO`` figures: a write is refused
when the memory that counts for eviction (used memory, less replication and AOF buffers), with
the write's own size, is over ``maxmemory``. Symphony says the server refuses writes when less
than :data:`WRITE_ROOM` is left: room for one of its larger commands (a claim, a batch of
reports, a batch of enqueued items), so a server that still takes a tiny write but not a
report is called what it is for Symphony. Nothing is written to find out, so a read-only user
gets the same answer.

On a Redis Cluster every primary (shard) has its own memory, limit and policy: the facts are read
from each primary in the same round trip (a cluster pipeline sends each its own ``INFO``), and
the server is described by its worst shard (an evicting policy, then a full one, then the
fullest), every shard's problems named by the shard (``on 10.0.0.5:6379: ...``).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import redis

from . import cluster
from .redaction import redact

EVICTS_ANY_KEY = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
EVICTS_TTL_KEYS = ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")
NEAR_FULL = 0.9  # share of maxmemory from which a noeviction server is said to be nearly full
UNKNOWN = "unknown"
WRITE_ROOM = 64 * 1024  # bytes: less than this left under maxmemory, and Symphony's writes are refused
POLICY_CHECK_S = 60.0  # a service looks at the policy again this often (and at once after a reconnect)
ACCEPT_EVICTION_VAR = "SYMPHONY_ACCEPT_EVICTION"  # 1/true/yes: run workers under an evicting policy anyway


@dataclass(frozen=True)
class ServerInfo:
    """Facts about the Redis server, and the problems they mean for Symphony, in plain words."""

    kind: str  # valkey | redis | unknown
    version: str  # e.g. "7.0.15", or "unknown"
    tls: bool  # this connection is encrypted
    maxmemory: int | None = None  # bytes; 0: no limit; None: unknown
    maxmemory_policy: str | None = None  # None: unknown
    used_memory: int | None = None  # bytes
    can_evict: bool | None = None  # the policy can delete Symphony's keys (None: unknown)
    out_of_memory: bool | None = None  # over maxmemory: writes are refused (None: unknown)
    problems: tuple[str, ...] = ()
    shards: int = 1  # primaries of a Redis Cluster (the figures above are its worst shard's); 1: one server

    @property
    def known(self) -> bool:
        """False when the Redis user may not read the server's settings (``INFO``)."""
        return self.maxmemory_policy is not None

    @property
    def display(self) -> str:
        """``valkey 9.0.0``, ``redis 7.0.15 (TLS)``, ``unknown server``."""
        name = f"{self.kind} {self.version}" if self.kind != UNKNOWN else "unknown server"
        if self.shards > 1:
            name += f" cluster of {self.shards} shards"
        return name + (" (TLS)" if self.tls else "")

    @property
    def settings(self) -> str:
        """``maxmemory 1.0 GB, maxmemory-policy noeviction, 12.3 MB used``, or why it is unknown."""
        if not self.known:
            return "memory settings unknown (this Redis user may not run INFO)"
        limit = f"maxmemory {_size(self.maxmemory)}" if self.maxmemory else "no maxmemory"
        used = f", {_size(self.used_memory)} used" if self.used_memory is not None else ""
        shard = f" (the worst of {self.shards} shards)" if self.shards > 1 else ""
        return f"{limit}, maxmemory-policy {self.maxmemory_policy}{used}{shard}"

    @property
    def headline(self) -> str:
        """The worst problem, short enough for a header line ("" when there is none)."""
        if self.out_of_memory:
            return ("Redis out of memory: it refuses writes, no task can be claimed or finished; raise maxmemory, "
                    "or purge a finished session")
        if self.can_evict:
            return (f"maxmemory-policy {self.maxmemory_policy} can delete Symphony's keys: workers refuse to run "
                    "(set maxmemory-policy noeviction, or start them with --accept-eviction)")
        return self.problems[0] if self.problems else ""

    @property
    def policy_danger(self) -> str | None:
        """What this server's maxmemory-policy can do to Symphony's keys and what to set (one line,
        the words every process uses), or None when the policy evicts nothing."""
        if not self.can_evict:
            return None
        what = ("any key, Symphony's queues, sessions and in-flight tasks included" if self.maxmemory_policy
                in EVICTS_ANY_KEY else "keys that have a TTL, Symphony's worker descriptions, reaper lock and grace "
                                       "window included")
        return (f"Redis has maxmemory-policy {self.maxmemory_policy} (maxmemory {_size(self.maxmemory or 0)}): when "
                f"full it deletes {what}, so tasks can be lost or run twice; set maxmemory-policy noeviction "
                f"(CONFIG SET maxmemory-policy noeviction, and in redis.conf)")

    @property
    def policy_refusal(self) -> str | None:
        """Why a worker must not run on this server unless the operator accepts eviction (one
        line, naming the policy and what to set), or None when the policy evicts nothing."""
        danger = self.policy_danger
        if danger is None:
            return None
        return f"{danger}, or pass --accept-eviction ({ACCEPT_EVICTION_VAR}=1) to run anyway"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = list(self.problems)
        data["policy_refusal"] = self.policy_refusal
        data["workers_refuse"] = self.policy_refusal is not None
        return data


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _problems(policy: str | None, maxmemory: int | None, counted: int | None, evicting: bool,
              out_of_memory: bool) -> tuple[str, ...]:
    if policy is None or not maxmemory:
        return ()
    limit = f"maxmemory {_size(maxmemory)}"
    problems = []
    if evicting and policy in EVICTS_ANY_KEY:
        problems.append(f"maxmemory-policy is {policy}: when Redis reaches its {limit} it deletes any key, "
                        "Symphony's queues, sessions and in-flight tasks included, so work is lost or runs twice; "
                        "set maxmemory-policy to noeviction (workers refuse to run under it unless started with "
                        "--accept-eviction)")
    elif evicting:
        problems.append(f"maxmemory-policy is {policy}: when Redis reaches its {limit} it deletes keys that have "
                        "a TTL, among them Symphony's worker descriptions, the reaper's lock, the grace window "
                        "after an outage and the jobs' key/values; set maxmemory-policy to noeviction (workers refuse "
                        "to run under it unless started with --accept-eviction)")
    if out_of_memory:
        problems.append(f"Redis is out of memory ({_size(counted or 0)} used, {limit}, policy {policy}): it "
                        "refuses writes, so no task can be claimed or finished; raise maxmemory, or free memory "
                        "(symphony purge a finished session)")
    elif policy == "noeviction" and counted is not None and counted >= NEAR_FULL * maxmemory:
        problems.append(f"Redis memory is {100 * counted / maxmemory:.0f}% full ({_size(counted)} of {limit}): "
                        "when it is full it refuses writes and no task can be claimed or finished")
    return tuple(problems)


def server_info_from(server: Mapping[str, Any] | None, memory: Mapping[str, Any] | None, *,
                     tls: bool = False) -> ServerInfo:
    """The facts from ``INFO server`` and ``INFO memory`` replies (None: the user may not run INFO)."""
    server = server or {}
    memory = memory or {}
    valkey = str(server.get("server_name", "")).lower() == "valkey" or "valkey_version" in server
    version = str(server.get("valkey_version" if valkey else "redis_version", "") or "")
    kind = "valkey" if valkey else "redis" if version else UNKNOWN
    policy = memory.get("maxmemory_policy")
    policy = str(policy) if policy not in (None, "") else None
    maxmemory = _int(memory.get("maxmemory"))
    used = _int(memory.get("used_memory"))
    counted = used - (_int(memory.get("mem_not_counted_for_evict")) or 0) if used is not None else None
    if policy is None or maxmemory is None:
        evicting = oom = None
    else:
        evicting = bool(maxmemory) and (policy in EVICTS_ANY_KEY or policy in EVICTS_TTL_KEYS)
        # an allkeys policy evicts until a write fits; the others refuse it
        oom = (bool(maxmemory) and counted is not None and counted + WRITE_ROOM > maxmemory
               and policy not in EVICTS_ANY_KEY)
    return ServerInfo(kind=kind, version=version or UNKNOWN, tls=tls, maxmemory=maxmemory, maxmemory_policy=policy,
                      used_memory=used, can_evict=evicting, out_of_memory=oom,
                      problems=_problems(policy, maxmemory, counted, bool(evicting), bool(oom)))


def uses_tls(client: Any) -> bool:
    """Whether ``client`` connects with TLS (on a cluster: to its first primary)."""
    _name, node = cluster.primaries(client)[0]
    return issubclass(node.connection_pool.connection_class, redis.SSLConnection)


def queue_reads(pipe: Any) -> None:
    """Queue the reads the facts come from (:func:`from_replies` takes their replies): ``INFO
    server`` and ``INFO memory``, on a cluster pipeline to every primary (two replies each)."""
    if cluster.is_cluster(pipe):
        for node in pipe.get_primaries():
            pipe.execute_command("INFO", "server", target_nodes=node)
            pipe.execute_command("INFO", "memory", target_nodes=node)
        return
    pipe.info("server")
    pipe.info("memory")


def from_replies(client: Any, replies: Sequence[Any]) -> ServerInfo:
    """The facts from the replies of :func:`queue_reads` (executed with ``raise_on_error=False``):
    an error reply (``INFO`` refused to an ACL user, or renamed away) makes them unknown. Two
    replies per primary of a cluster, in the order of ``get_primaries()``."""
    tls = uses_tls(client)
    parsed = [r if isinstance(r, dict) else None for r in replies]
    shards = [server_info_from(parsed[i], parsed[i + 1] if i + 1 < len(parsed) else None, tls=tls)
              for i in range(0, max(len(parsed), 2), 2)]
    if len(shards) == 1:
        return shards[0]
    names = [name for name, _node in cluster.primaries(client)]
    return worst_shard(list(zip(names + [""] * len(shards), shards)))


def _danger(info: ServerInfo) -> tuple:
    """Orders shards from the least to the most dangerous for Symphony."""
    full = (info.used_memory or 0) / info.maxmemory if info.maxmemory else 0.0
    return bool(info.can_evict), bool(info.out_of_memory), info.known, full


def worst_shard(shards: Sequence[tuple[str, ServerInfo]]) -> ServerInfo:
    """One :class:`ServerInfo` for a cluster's primaries ``[(name, facts)]``: the worst shard's
    figures, the oldest version, and every shard's problems (named by shard unless all agree)."""
    worst = max((info for _name, info in shards), key=_danger)
    oldest = min((info for _name, info in shards), key=lambda i: _version_key(i.version))
    texts = [info.problems for _name, info in shards]
    if all(t == texts[0] for t in texts):
        problems = texts[0]
    else:
        problems = tuple(f"on {name or 'a shard'}: {p}" for name, info in shards for p in info.problems)
    unknown = any(not info.known for _name, info in shards)
    return ServerInfo(kind=oldest.kind, version=oldest.version, tls=worst.tls, maxmemory=worst.maxmemory,
                      maxmemory_policy=None if unknown else worst.maxmemory_policy,
                      used_memory=worst.used_memory, can_evict=None if unknown else worst.can_evict,
                      out_of_memory=None if unknown else worst.out_of_memory, problems=problems,
                      shards=len(shards))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def read_server_info(client: Any) -> ServerInfo:
    """One round trip (on a cluster: one to each primary, sent together)."""
    with client.pipeline(transaction=False) as pipe:
        queue_reads(pipe)
        replies = pipe.execute(raise_on_error=False)
    return from_replies(client, replies)


class PolicyNotice:
    """An evicting maxmemory-policy, said by a long-running service (the exporter, the SLURM
    tracker, the Azure Monitor collector, the web console's server) once per change: one WARNING
    at start, again after a reconnect if the policy still evicts, and when it changes; never per
    poll. Services keep running (they read, or write bounded keys with a TTL); only workers refuse.

    :meth:`check` reads the server's facts at most every ``every_s`` (at once after :meth:`lost`);
    :meth:`observe` takes facts already read (the status snapshot's ``server``) at no round trip.
    Settings that cannot be read (an ACL user without INFO, Redis down) change nothing."""

    def __init__(self, logger: logging.Logger, who: str, *, every_s: float = POLICY_CHECK_S,
                 clock=time.monotonic):
        self.log, self.who, self.every_s, self._clock = logger, who, every_s, clock
        self._said: str | None = None  # the warning last given (None: the policy evicts nothing, or not said yet)
        self._due = 0.0
        self._lock = threading.Lock()

    def lost(self) -> None:
        """Redis went away: once it answers again, the policy is looked at (and said) again."""
        with self._lock:
            self._said, self._due = None, 0.0

    def observe(self, info: ServerInfo | None) -> None:
        if info is None or not info.known:
            return
        danger = info.policy_danger
        with self._lock:
            self._due = self._clock() + self.every_s
            if danger == self._said:
                return
            self._said = danger
        if danger is not None:
            self.log.warning("%s", redact(f"{danger}; {self.who} keeps running (it only reads, or writes bounded "
                                          f"keys; workers refuse to run under it)"))

    def check(self, engine: Any) -> None:
        """Look at the policy if it is due (one round trip); never raises."""
        with self._lock:
            if self._clock() < self._due:
                return
        try:
            info = engine.server_info()
        except Exception:  # noqa: BLE001 - unreadable now: looked at again after the reconnect
            return
        self.observe(info)
