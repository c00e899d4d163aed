"""Where a session's task messages really are, and healing what a partial loss of keys left.

Redis can lose some keys and keep others (an evicting policy, an operator's ``DEL``, a restore
of part of the data). Every item in progress has two traces: its **live entry** (``live`` hash:
item -> stage) and its **task message**, in exactly one of the stage's queue, its retry set or
a worker's in-flight list. Each can vanish alone:

* the message vanished (a queue or an in-flight list was deleted): the live entry says "in
  progress" forever, nothing will run it, and ``enqueue`` skips it (its dedup). Such an entry is
  an **orphan**: nothing can give it a message again (only ``enqueue`` makes messages, and it
  skips items that have an entry; a report for a message that is gone changes nothing), so
  repair may remove it and enqueue what the disk says the item is missing.
* the live entry vanished: the message runs, but ``enqueue`` would queue the item a second
  time. The entry is restored (atomically, only while the message is still where it was seen).

:func:`locate` reads both sides in one ``MULTI`` (a consistent view): first only the counts
(cheap whatever the queues' length), and the messages themselves only when the counts disagree.
:func:`heal` applies the result with ``heal.lua``, which also sets the counters that describe
the present (running, delayed, failed, timed out, cancelled) from the keys themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import redis

from .errors import SymphonyError
from .keys import Keys
from .lease import BELL_MAX
from .messages import decode_task
from .fleet import FleetOps
from .scripts import ensure_loaded, scripts

SCAN_COUNT = 1000
AGAIN = "again"  # heal.lua: a worker registered meanwhile, look again
LEASE_MS = 15_000  # the lease given to an unregistered worker found holding tasks (the default lease, and a beat)


@dataclass(frozen=True)
class Whereabouts:
    """One consistent look at a session's live entries and task messages."""

    session: str
    live: Mapping[str, str]  # item -> stage, the live hash as read
    orphans: Mapping[str, str] = field(default_factory=dict)  # live entries whose message is nowhere
    unlisted: Mapping[str, tuple[str, int, str]] = field(default_factory=dict)  # item -> (stage, key index, message)
    workers: tuple[str, ...] = ()  # the workers whose in-flight lists were read
    inflight_keys: tuple[str, ...] = ()
    unregistered: tuple[str, ...] = ()  # workers holding tasks of any session that are not registered
    counters_off: tuple[str, ...] = ()  # `stage|running` / `stage|delayed` counters that say otherwise
    stats: Mapping[str, str] = field(default_factory=dict)  # the session's counters, as read
    unready: tuple[str, ...] = ()  # stages with queued or retrying tasks the stage's ready set does not name

    @property
    def needs_healing(self) -> bool:
        return bool(self.orphans or self.unlisted or self.unregistered or self.counters_off or self.unready)

    @property
    def held(self) -> set[str]:
        """The items really in progress: a live entry with its message, or a message whose entry
        is restored."""
        return (set(self.live) - set(self.orphans)) | set(self.unlisted)


def inflight_lists(client: redis.Redis, keys: Keys, session: str) -> tuple[tuple[str, ...], tuple[str, ...],
                                                                      tuple[str, ...]]:
    """Every in-flight list of ``session``: its holders' (``holders``, in the session's slot) and
    any other left behind (its holders entry vanished). Returns (worker ids, keys, the ids not
    registered as workers)."""
    prefix = keys.inflight(session, "")
    ids = set(client.smembers(keys.holders(session)))
    for key in client.scan_iter(match=keys.inflight(session, "*"), count=SCAN_COUNT, _type="list"):
        ids.add(key[len(prefix):])
    registered = set(client.zrange(keys.workers, 0, -1))
    ordered = tuple(sorted(ids))
    return ordered, tuple(keys.inflight(session, w) for w in ordered), tuple(sorted(ids - registered))


def _task(raw: str) -> tuple[str, str, str] | None:
    """(item, session, stage) of a message, or None if it is not one."""
    try:
        task = decode_task(raw)
    except Exception:  # noqa: BLE001 - an undecodable message is nobody's: the reaper dead-letters it
        return None
    return task.item, task.session, task.stage


@dataclass(frozen=True)
class _Counts:
    """The cheap first look (one MULTI): counters, lengths, the in-flight lists, the ready sets."""

    stats: Mapping[str, str]
    live: int  # entries in the live hash
    lengths: Sequence[int]  # each stage's queue
    retrying: Sequence[int]  # each stage's retry set
    lists: Sequence[Sequence[str]]  # each in-flight list's messages
    ready: Sequence[float | None]  # the session's score in each stage's ready set


def _count(client: redis.Redis, keys: Keys, session: str, stages: Sequence[str], inflight: Sequence[str]) -> _Counts:
    m = len(stages)
    with client.pipeline(transaction=False) as pipe:  # the ready sets are the fleet's: read apart
        for stage in stages:
            pipe.zscore(keys.ready(stage), session)
        ready = pipe.execute()
    with client.pipeline(transaction=True) as pipe:  # the session's slot, one consistent view
        pipe.hgetall(keys.stats(session))
        pipe.hlen(keys.live(session))
        for stage in stages:
            pipe.llen(keys.queue(stage, session))
        for stage in stages:
            pipe.zcard(keys.delayed(stage, session))
        for key in inflight:
            pipe.lrange(key, 0, -1)
        r = pipe.execute()
    return _Counts(r[0], r[1], r[2:2 + m], r[2 + m:2 + 2 * m], r[2 + 2 * m:], ready)


def _running(counts: _Counts, session: str, stages: Sequence[str]) -> dict[str, int]:
    """The session's messages in the in-flight lists, per stage."""
    running = dict.fromkeys(stages, 0)
    for entries in counts.lists:
        for raw in entries:
            task = _task(raw)
            if task is not None and task[1] == session and task[2] in running:
                running[task[2]] += 1
    return running


def _disagreements(counts: _Counts, running: Mapping[str, int],
                   stages: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The counters that say otherwise than the keys, and the stages whose queue or retry set has
    work that the stage's ready set does not name (workers find queues there: never claimed)."""
    stats = counts.stats
    off = tuple(f"{s}|running" for s in stages if int(stats.get(f"{s}|running", 0) or 0) != running[s])
    off += tuple(f"{s}|delayed" for s, z in zip(stages, counts.retrying) if int(stats.get(f"{s}|delayed", 0) or 0) != z)
    unready = tuple(s for s, n, z, score in zip(stages, counts.lengths, counts.retrying, counts.ready)
                    if (n or z) and score is None)
    return off, unready


def _messages(client: redis.Redis, keys: Keys, session: str, stages: Sequence[str],
              inflight: Sequence[str]) -> tuple[dict[str, str], dict[str, tuple[str, int, str]]]:
    """The live hash and where each item's message is (one MULTI): item -> (stage, index of its
    key in heal.lua's KEYS, message)."""
    m, n = len(stages), len(inflight)
    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.live(session))
        for stage in stages:
            pipe.lrange(keys.queue(stage, session), 0, -1)
        for stage in stages:
            pipe.zrange(keys.delayed(stage, session), 0, -1)
        for key in inflight:
            pipe.lrange(key, 0, -1)
        r = pipe.execute()
    # heal.lua's KEYS (1-based, as Lua counts): live, stats, outcomes, holders, then the in-flight
    # lists from 5, the retry sets, the queues
    containers = [(5 + n + k, entries) for k, entries in enumerate(r[1 + m:1 + 2 * m])]
    containers += [(5 + n + m + k, entries) for k, entries in enumerate(r[1:1 + m])]
    containers += [(5 + k, entries) for k, entries in enumerate(r[1 + 2 * m:])]
    found: dict[str, tuple[str, int, str]] = {}
    for index, entries in containers:
        for raw in entries:
            task = _task(raw)
            if task is not None and task[1] == session:
                found.setdefault(task[0], (task[2], index, raw))
    return r[0], found


def locate(client: redis.Redis, keys: Keys, session: str, stages: Sequence[str]) -> Whereabouts:
    """Where ``session``'s items are, by their live entries and their task messages."""
    workers, inflight, unregistered = inflight_lists(client, keys, session)
    counts = _count(client, keys, session, stages, inflight)
    holding = {key for key, entries in zip(inflight, counts.lists) if entries}
    unregistered = tuple(w for w in unregistered if keys.inflight(session, w) in holding)
    running = _running(counts, session, stages)
    off, unready = _disagreements(counts, running, stages)
    common = dict(workers=workers, inflight_keys=inflight, unregistered=unregistered, counters_off=off,
                  stats=counts.stats, unready=unready)
    if counts.live == sum(counts.lengths) + sum(counts.retrying) + sum(running.values()):
        return Whereabouts(session, client.hgetall(keys.live(session)), **common)  # one message per live entry
    live, found = _messages(client, keys, session, stages, inflight)  # the counts disagree: look closer
    orphans = {item: stage for item, stage in live.items() if item not in found}
    unlisted = {item: where for item, where in found.items() if item not in live}
    return Whereabouts(session, live, orphans, unlisted, **common)


@dataclass(frozen=True)
class Healed:
    removed: int = 0  # orphaned live entries removed (their items are enqueued by repair)
    restored: int = 0  # live entries given back to messages that had lost theirs
    leased: int = 0  # unregistered workers holding tasks, given a lease (renewed if alive, else reclaimed)


def heal(client: redis.Redis, keys: Keys, where: Whereabouts, stages: Sequence[str],
         items: Iterable[str] | None = None, lease_ms: int = LEASE_MS) -> Healed:
    """Apply :func:`locate`'s findings (only for ``items``, when given) and recount the counters
    of the present (``heal.lua``, in the session's slot); looks again if a worker claimed from
    the session meanwhile. Then the fleet side: an unregistered worker holding tasks gets a lease
    (renewed if it is alive, else its tasks are reclaimed when it lapses) and its holds index
    back, and every stage with work is named in its ready set again, its bell rung."""
    wanted = None if items is None else set(items)
    session = where.session
    for _ in range(5):
        records: list[str] = []
        for item, stage in where.orphans.items():
            if wanted is None or item in wanted:
                records += ["o", item, stage]
        for item, (stage, index, raw) in where.unlisted.items():
            if wanted is None or item in wanted:
                records += ["u", item, stage, str(index), raw]
        key_list = [keys.live(session), keys.stats(session), keys.outcomes(session), keys.holders(session),
                    *where.inflight_keys, *(keys.delayed(s, session) for s in stages),
                    *(keys.queue(s, session) for s in stages)]
        reply = scripts().heal(client, key_list, [session, len(where.workers), len(stages), *where.workers, *stages,
                                                  *records])
        if reply and reply[0] != AGAIN:
            return _heal_fleet(client, keys, session, stages, reply, lease_ms)
        where = locate(client, keys, session, stages)
    raise SymphonyError("workers kept claiming while repair counted their tasks; run repair again")


def _heal_fleet(client: redis.Redis, keys: Keys, session: str, stages: Sequence[str], reply: Sequence,
                lease_ms: int) -> Healed:
    removed, restored, now = int(reply[0]), int(reply[1]), int(reply[2])
    m = len(stages)
    per_stage = reply[3:3 + 2 * m]
    holding = list(reply[3 + 2 * m:])
    ensure_loaded(client)
    fleet = FleetOps()
    for stage, queued, due in zip(stages, per_stage[0::2], per_stage[1::2]):
        if int(queued) > 0:
            fleet.work(keys, stage, session, ring=int(queued), bell_max=BELL_MAX)
        elif due != "":
            fleet.work(keys, stage, session, delay_ms=max(0, int(float(due)) - now))
    with client.pipeline(transaction=True) as pipe:
        for worker in holding:
            pipe.zadd(keys.workers, {worker: now + lease_ms}, nx=True)
            pipe.sadd(keys.holds(worker), session)
        if fleet:
            fleet.queue(pipe)
        done = pipe.execute()
    leased = sum(int(x) for x in done[0:2 * len(holding):2])
    return Healed(removed, restored, leased)
