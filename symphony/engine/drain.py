"""Draining workers: the step before deleting a VM or rebooting it.

An operator drains a worker process (by its id, or every process of a ``--name``), a host or a
pool: the workers it matches stop claiming, finish what they hold (or, with ``now``, hand it
back to the head of its queue, the attempt not charged) and then exit, or, with ``idle``, stay
up and beat without claiming until they are undrained.

The drains live in one HASH, ``symphony:drain`` (docs/keys.md): field ``worker:<id or name>``,
``host:<host>`` or ``pool:<pool>``, value a small JSON record (``now``, ``idle``, ``by``, ``at``).
A worker reads the fields that can match it (one ``HMGET``) before its first claim and at every
heartbeat (:func:`drain_for`), so a drain takes effect within one heartbeat. A worker that
exits drained removes its own ``worker:<id>`` field; ``undrain`` removes any; entries older
than :data:`DRAIN_MAX_AGE_MS` (a deleted VM's host) are dropped by the next drain or undrain.
"""
from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from typing import Any, Iterable

import redis

from .errors import SymphonyError
from .keys import Keys
from .registry import add_event

KINDS = ("worker", "host", "pool")
DRAIN_MAX_AGE_MS = 7 * 24 * 3600 * 1000
MAX_DRAINS = 10_000  # fields of the drain hash; a drain beyond this is refused


@dataclass(frozen=True)
class Drain:
    """One drain: what it matches and how the workers it matches stop."""

    kind: str  # worker | host | pool
    target: str
    now: bool = False  # hand back what they hold instead of finishing it
    idle: bool = False  # stay up without claiming instead of exiting
    by: str = ""
    at_ms: int = 0

    @property
    def field(self) -> str:
        return f"{self.kind}:{self.target}"

    def matches(self, worker: Any) -> bool:
        """Does this drain apply to ``worker`` (a :class:`~engine.snapshot.WorkerStatus`)?"""
        if self.kind == "worker":
            return self.target in (worker.id, worker.name)
        if self.kind == "host":
            return worker.host == self.target
        return self.kind == "pool" and worker.pool == self.target

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "now": self.now, "idle": self.idle, "by": self.by,
                "at": self.at_ms / 1000 if self.at_ms else None}

    def describe(self) -> str:
        how = "hand back what they hold" if self.now else "finish what they hold"
        then = "stay idle" if self.idle else "exit"
        return f"{self.kind} {self.target}: {how}, then {then}"

    @classmethod
    def decode(cls, field: str, raw: str) -> "Drain":
        kind, _, target = field.partition(":")
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(kind, target, now=bool(data.get("now")), idle=bool(data.get("idle")), by=str(data.get("by", "")),
                   at_ms=int(data.get("at") or 0))


def combine(drains: Iterable[Drain]) -> Drain | None:
    """What a worker matched by several drains does: the most urgent (hand back if any says so;
    exit unless every one says idle)."""
    found = list(drains)
    if not found:
        return None
    first = found[0]
    return Drain(first.kind, first.target, now=any(d.now for d in found), idle=all(d.idle for d in found),
                 by=first.by, at_ms=first.at_ms)


def operator() -> str:
    """Who is asking (``user@host``), for the activity."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "?"
    return f"{user}@{socket.gethostname().split('.')[0] or 'host'}"


def _target(worker: str | None, host: str | None, pool: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("worker", worker), ("host", host), ("pool", pool)) if v]
    if len(given) != 1:
        raise SymphonyError("name exactly one of a worker, a host or a pool to drain")
    kind, target = given[0]
    if ":" in target or len(target) > 255 or not target.strip():
        raise SymphonyError(f"{kind} {target!r} is not a valid name (no ':', at most 255 characters)")
    return kind, target


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _prune(client: redis.Redis, keys: Keys, now_ms: int) -> None:
    stale = [f for f, raw in client.hgetall(keys.drain).items()
             if now_ms - Drain.decode(f, raw).at_ms > DRAIN_MAX_AGE_MS]
    if stale:
        client.hdel(keys.drain, *stale)


def drain(client: redis.Redis, keys: Keys, *, worker: str | None = None, host: str | None = None,
          pool: str | None = None, now: bool = False, idle: bool = False, by: str | None = None) -> Drain:
    """Drain the workers of ``worker`` (an id or a ``--name``), ``host`` or ``pool``; the drain
    replaces an earlier one of the same target. Takes effect at each worker's next heartbeat."""
    kind, target = _target(worker, host, pool)
    at = _server_ms(client)
    _prune(client, keys, at)
    if client.hlen(keys.drain) >= MAX_DRAINS and not client.hexists(keys.drain, f"{kind}:{target}"):
        raise SymphonyError(f"{MAX_DRAINS} drains are already recorded; undrain some first")
    entry = Drain(kind, target, now=now, idle=idle, by=by or operator(), at_ms=at)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.drain, entry.field, json.dumps({"now": now, "idle": idle, "by": entry.by, "at": at},
                                                      separators=(",", ":")))
        add_event(pipe, keys, "drain", f"{entry.by} drained {entry.describe()}", worker=target if kind == "worker"
                  else None, by=entry.by)
        pipe.execute()
    return entry


def undrain(client: redis.Redis, keys: Keys, *, worker: str | None = None, host: str | None = None,
            pool: str | None = None, by: str | None = None) -> bool:
    """Remove the drain of that target (True if there was one): its idle workers claim again;
    workers that already exited stay gone (start them again)."""
    kind, target = _target(worker, host, pool)
    _prune(client, keys, _server_ms(client))
    who = by or operator()
    with client.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.drain, f"{kind}:{target}")
        add_event(pipe, keys, "undrain", f"{who} undrained {kind} {target}", by=who)
        removed, _ = pipe.execute()
    return bool(removed)


def decode_drains(raw: Any) -> tuple[Drain, ...]:
    """The drain hash as read (HGETALL), oldest first."""
    if not isinstance(raw, dict):
        return ()
    return tuple(sorted((Drain.decode(f, v) for f, v in raw.items()), key=lambda d: (d.at_ms, d.field)))


def drains(client: redis.Redis, keys: Keys) -> tuple[Drain, ...]:
    """Every drain recorded, oldest first."""
    return decode_drains(client.hgetall(keys.drain))


def candidate_fields(worker_id: str, name: str, host: str, pool: str | None) -> list[str]:
    fields = [f"worker:{worker_id}"]
    if name and name != worker_id:
        fields.append(f"worker:{name}")
    if host:
        fields.append(f"host:{host}")
    if pool:
        fields.append(f"pool:{pool}")
    return fields


def drain_for(client: redis.Redis, keys: Keys, worker_id: str, *, name: str = "", host: str = "",
              pool: str | None = None) -> Drain | None:
    """The worker's view: the drain that applies to it, if any (one round trip)."""
    fields = candidate_fields(worker_id, name, host, pool)
    raws = client.hmget(keys.drain, fields)
    return combine(Drain.decode(f, raw) for f, raw in zip(fields, raws) if raw is not None)


def forget_worker(client: redis.Redis, keys: Keys, worker_id: str) -> None:
    """A worker that exited drained: its own entry (by id) is no longer needed."""
    client.hdel(keys.drain, f"worker:{worker_id}")
