"""The fleet as a console shows it: one page of the worker table and the fleet's aggregates, at a
cost bounded by what is shown, not by the number of workers.

A :class:`FleetReader` lives as long as the console (one per open view) and takes part in the
snapshot's two round trips (``read_snapshot(..., fleet=reader, page=(offset, limit))``):

* round trip 1: ``ZCARD`` of the workers ZSET (how many are registered), the ``limit + offset``
  oldest leases (``ZRANGE 0 n WITHSCORES``: the dead and the late are always the oldest leases,
  so "trouble first" needs no other index), and one step of a ``ZSCAN`` over the ZSET (about a
  fifteenth of the fleet, at least ``SWEEP_MIN``);
* round trip 2: ``HMGET`` of the table's fields for the page's workers only, and of the few
  fields the aggregates need (state, pool, host, CPU, memory) for the workers that ZSCAN step
  returned.

So each worker hash is read about once per ``SWEEP_POLLS`` polls for the aggregates (per pool
and per host: workers by state, CPU and memory mean and maximum, host CPU), and every poll for
the rows on screen. The aggregates are therefore up to one sweep old for busy/idle and CPU
figures; the dead and late workers are exact every poll (they are the oldest leases, read every
poll). ZSCAN's guarantee (every member present from the start to the end of a sweep is returned
at least once) keeps every registered worker in the cache; a worker not returned by a whole
sweep left the registry and is dropped. The first read of a reader fetches the whole membership
once (the cache starts empty).

The page is ordered like the console's table always was: the dead and the late first, then by
pool, host and id (the order of the cache, which knows every worker's pool and host).

Every command names one key of the fleet slot, so the same pipelines run on a Redis Cluster
(redis-py's cluster pipeline sends each command to its key's node).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from redis.cluster import ClusterPipeline
from redis.crc import key_slot

from .cluster import is_cluster
from .fleet_summary import TROUBLE, Figures, FleetSummary, GroupSummary, _Counts, _figures, _ordered_states
from .keys import Keys
from .numbers import optional_number as _float
from .scripts import scripts

SWEEP_POLLS = 15  # a full sweep of the fleet's hashes takes about this many polls
SWEEP_MIN = 200  # ZSCAN COUNT at least this
MAX_TROUBLE = 1000  # the oldest leases read every poll at most (the dead and late shown first)
DEFAULT_LEASE_MS = 12_500.0  # a worker's default (its hash says its own)
SUMMARY_FIELDS = ("state", "pool", "host", "beat", "hb_ms", "cpu", "mem", "host_cpu", "host_mem")
ROW_FIELDS = ("name", "host", "pid", "pool", "roles", "state", "current", "since", "beat", "hb_ms", "cpu", "mem",
              "host_cpu", "host_mem", "rss", "started", "supervisor", "done", "cpus", "slurm_job", "slurm_array",
              "job_end")


READ_CHUNK = 1000  # keys per read.lua call


def slot_chunks(client: Any, keys: Sequence[str]) -> list[list[int]]:
    """The keys' indices in read.lua calls of at most READ_CHUNK keys; on a Redis Cluster each
    call's keys share one hash slot (a script may not span slots), in the order they came."""
    if not _is_cluster(client):
        return [list(range(i, min(len(keys), i + READ_CHUNK))) for i in range(0, len(keys), READ_CHUNK)]
    by_slot: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_slot.setdefault(key_slot(key.encode()), []).append(index)
    return [indices[i:i + READ_CHUNK] for indices in by_slot.values() for i in range(0, len(indices), READ_CHUNK)]


def _is_cluster(client: Any) -> bool:
    """A cluster client or its pipeline (engine.cluster's DeferredClient resolved first)."""
    return is_cluster(client) or isinstance(client, ClusterPipeline)


def _numbers(get: Any) -> tuple[float, float | None, float | None, float | None, float | None, float | None]:
    """beat, hb_ms, cpu, mem, host_cpu, host_mem of a worker hash's fields (``get``: its dict's get)."""
    try:
        cpu, mem, host_cpu, host_mem = (float(v) if v else None
                                        for v in (get("cpu"), get("mem"), get("host_cpu"), get("host_mem")))
        return float(get("beat") or 0.0), float(get("hb_ms") or 0.0) or None, cpu, mem, host_cpu, host_mem
    except (TypeError, ValueError):
        return (_float(get("beat")) or 0.0, _float(get("hb_ms")),
                *(_float(get(k)) for k in ("cpu", "mem", "host_cpu", "host_mem")))  # type: ignore[return-value]


def derived_state(raw_state: str | None, beat: float | None, hb_ms: float | None, expiry: float | None,
                  now_ms: float) -> str:
    """A worker's state as the table shows it: dead once its lease lapsed, stale when its last
    beat is more than 1.5 heartbeats old, else what it said (``snapshot._worker_status``'s rule)."""
    state = raw_state or "unknown"
    if expiry is not None and expiry <= now_ms:
        return "dead"
    if beat and (now_ms - beat) > 1.5 * (hb_ms or 5000.0):
        return "stale"
    return state


@dataclass(slots=True)
class _Entry:
    """What the reader remembers of one worker (from the last time its hash was read)."""

    pool: str
    host: str
    state: str  # the worker's own word (busy, idle, stopping...)
    derived: str  # the state as derived when read (dead/stale included)
    cpu: float | None
    mem: float | None
    host_cpu: float | None
    host_mem: float | None
    seen: int  # the sweep that last saw it
    hb_ms: float | None = None
    lease_ms: float | None = None  # the lease's length: its expiry (the ZSET's score) minus its beat


@dataclass
class _Plan:
    """What one read queued, so its replies can be taken apart."""

    offset: int
    limit: int
    candidates: list[tuple[str, float]] = field(default_factory=list)  # the oldest leases
    scanned: list[tuple[str, float]] = field(default_factory=list)  # this poll's step of the sweep
    cursor: int = 0
    registered: int = 0
    page_ids: list[str] = field(default_factory=list)
    trouble: frozenset[str] = frozenset()
    shape: Any = None  # how round trip 2's script replies map to the workers (None: one reply each)


class FleetReader:
    """One console view's memory of the fleet (see the module's doc). Not thread-safe: one read at
    a time (the console's poller runs one poll at a time)."""

    def __init__(self, keys: Keys, *, sweep_polls: int = SWEEP_POLLS, sweep_min: int = SWEEP_MIN,
                 aggregates: bool = True):
        """``aggregates=False``: no sweep (a view that shows only a page, or no worker table)."""
        self.keys = keys
        self.sweep_polls = max(1, sweep_polls)
        self.sweep_min = max(1, sweep_min)
        self.aggregates = aggregates
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] | None = None  # the cache sorted by pool, host, id; rebuilt on change
        self._cursor = 0
        self._sweep = 0
        self._registered = 0
        self._plan: _Plan | None = None
        self._counts = _Counts()
        self._gone: list[str] = []  # forgotten since the counts were last brought up to date
        self._pool_figures: dict[str, Figures] | None = None  # CPU and memory, computed once per sweep
        self._host_figures: dict[str, Figures] | None = None
        self._hosts_from: dict[str, Figures] | None = None  # the figures the host cache was built from
        self._host_cache: dict[str, GroupSummary] = {}
        self._host_order: list[str] = []
        self._hosts: tuple[GroupSummary, ...] | None = None
        self.primed = not aggregates

    def prime(self, client: Any) -> None:
        """The first read: every worker's summary fields (two round trips, once per reader)."""
        members = client.zrange(self.keys.workers, 0, -1, withscores=True)
        seconds, micros = client.execute_command("TIME")
        now_ms = seconds * 1000 + micros / 1000
        with client.pipeline(transaction=False) as pipe:
            for w, _ in members:
                pipe.hmget(self.keys.worker(w), SUMMARY_FIELDS)
            replies = pipe.execute() if members else []
        for (w, expiry), values in zip(members, replies):
            if values is not None and any(v is not None for v in values):
                self._remember(w, dict(zip(SUMMARY_FIELDS, values)), expiry, now_ms, 0)
        for w, e in self._entries.items():
            self._counts.set(w, e.pool, e.host, e.derived)
        self._registered = len(members)
        self.primed = True

    # --- round trip 1 ---------------------------------------------------------------------
    def queue_first(self, pipe: Any, page: tuple[int, int]) -> int:
        """Queue round trip 1's commands on ``pipe``; returns how many."""
        offset, limit = max(0, int(page[0])), max(0, int(page[1]))
        self._plan = _Plan(offset, limit)
        pipe.zcard(self.keys.workers)
        pipe.zrange(self.keys.workers, 0, max(1, min(offset + limit, MAX_TROUBLE)) - 1, withscores=True)
        if not self.aggregates:
            return 2
        pipe.zscan(self.keys.workers, self._cursor,
                   count=max(self.sweep_min, math.ceil(self._registered / self.sweep_polls)))
        return 3

    def take_first(self, replies: Sequence[Any]) -> None:
        plan = self._plan
        assert plan is not None
        registered, candidates, (cursor, members) = (*replies[:2], replies[2] if self.aggregates else (0, []))
        plan.registered = self._registered = int(registered)
        plan.candidates = list(candidates)
        plan.cursor, plan.scanned = int(cursor), list(members)

    # --- round trip 2 ---------------------------------------------------------------------
    def queue_second(self, pipe: Any, now_ms: float, scripted: bool = False) -> list[Any]:
        """Queue round trip 2's reads: the page's rows, then the sweep's summaries (``scripted``:
        through read.lua, else one HMGET each); returns one entry per command queued (the script's
        calls, or None) for ``scripts.execute``."""
        plan = self._plan
        assert plan is not None
        entries = self._entries
        trouble = []
        for w, expiry in plan.candidates:
            e = entries.get(w)
            lease = e.lease_ms if e is not None and e.lease_ms else DEFAULT_LEASE_MS
            state = derived_state("", expiry - lease, e.hb_ms if e is not None else None, expiry, now_ms)
            if state in TROUBLE:
                trouble.append(w)
        trouble.sort(key=lambda w: (entries[w].pool, entries[w].host, w) if w in entries else ("", "?", w))
        plan.trouble = frozenset(trouble)
        ids = self._page_ids(plan, trouble)
        plan.page_ids = ids
        page_keys = [self.keys.worker(w) for w in ids]
        scan_keys = [self.keys.worker(w) for w, _ in plan.scanned]
        if not scripted:
            plan.shape = None
            for key in page_keys:
                pipe.hmget(key, ROW_FIELDS)
            for key in scan_keys:
                pipe.hmget(key, SUMMARY_FIELDS)
            return [None] * (len(page_keys) + len(scan_keys))
        # read.lua, a few calls of up to READ_CHUNK keys (of one slot each): one reply per call
        # instead of one per worker keeps the client's cost low (the sweep reads hundreds)
        lua = scripts().read
        page_chunks, scan_chunks = slot_chunks(pipe, page_keys), slot_chunks(pipe, scan_keys)
        plan.shape = (page_chunks, scan_chunks)
        queued = [lua.queue(pipe, [page_keys[i] for i in c], ("h" * len(c),), readonly=True) for c in page_chunks]
        queued += [lua.queue(pipe, [scan_keys[i] for i in c], ("f" * len(c), *SUMMARY_FIELDS), readonly=True)
                   for c in scan_chunks]
        return queued

    def _page_ids(self, plan: "_Plan", trouble: list[str]) -> list[str]:
        """The page's workers: the troubled from ``offset``, then the cache's order; a few rows
        more than the page, so a worker that left since the cache saw it leaves no gap."""
        room = plan.limit + (max(5, plan.limit // 4) if plan.limit else 0)
        ids = trouble[plan.offset:plan.offset + room]
        if len(ids) >= room:
            return ids
        skip = max(0, plan.offset - len(trouble))
        for w in self._healthy_order():
            if w in plan.trouble:
                continue
            if skip:
                skip -= 1
                continue
            ids.append(w)
            if len(ids) >= room:
                break
        return ids

    @staticmethod
    def _unchunk(chunks: list[list[int]], replies: Sequence[Any], size: int) -> list[Any]:
        out: list[Any] = [None] * size
        for chunk, reply in zip(chunks, replies):
            for index, value in zip(chunk, reply):
                out[index] = value
        return out

    def _values(self, plan: "_Plan", replies: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """Each page row's fields (a dict, None when gone) and each swept worker's summary values."""
        n_page = len(plan.page_ids)
        if plan.shape is None:
            page = [None if v is None or all(x is None for x in v) else
                    {k: x for k, x in zip(ROW_FIELDS, v) if x is not None} for v in replies[:n_page]]
            return page, list(replies[n_page:])
        page_chunks, scan_chunks = plan.shape
        flat = self._unchunk(page_chunks, replies[:len(page_chunks)], n_page)
        page = [dict(zip(v[::2], v[1::2])) if v else None for v in flat]
        return page, self._unchunk(scan_chunks, replies[len(page_chunks):], len(plan.scanned))

    def take_second(self, replies: Sequence[Any], now_ms: float,
                    worker_status: Any) -> tuple[tuple[Any, ...], FleetSummary]:
        """The page's :class:`WorkerStatus` rows (``worker_status(id, expiry, info, now_ms)``
        builds one) and the fleet's summary."""
        plan = self._plan
        assert plan is not None
        self._plan = None
        scores = dict(plan.candidates)
        scores.update(plan.scanned)
        sweep = self._sweep
        rows: list[Any] = []
        page, scanned = self._values(plan, replies)
        for w, info in zip(plan.page_ids, page):
            if info is None:
                self._forget(w)  # it left the registry
                continue
            expiry = scores.get(w)
            rows.append(worker_status(w, expiry if expiry is not None else now_ms + 1, info, now_ms))
            self._remember(w, info, expiry, now_ms, sweep)
        for (w, expiry), values in zip(plan.scanned, scanned):
            if values is None or all(v is None for v in values):
                self._forget(w)
                continue
            self._remember(w, dict(zip(SUMMARY_FIELDS, values)), expiry, now_ms, sweep)
        if plan.cursor == 0:  # a sweep ended: whoever it did not see left the registry
            for w in [w for w, e in self._entries.items() if e.seen < sweep]:
                self._forget(w)
            self._sweep += 1
        self._cursor = plan.cursor
        fresh = {s.id: s.state for s in rows}
        for w, expiry in plan.candidates:  # the oldest leases: exact trouble every poll
            e = self._entries.get(w)
            if w not in fresh and e is not None:
                lease = e.lease_ms or DEFAULT_LEASE_MS
                fresh[w] = derived_state(e.state, expiry - lease, e.hb_ms, expiry, now_ms)
        touched = [*plan.page_ids, *(w for w, _ in plan.scanned), *(w for w, _ in plan.candidates),
                   *self._gone]
        self._gone = []
        return tuple(rows[:plan.limit]), self._summary(plan, fresh, touched)

    # --- the cache ----------------------------------------------------------------------
    def _remember(self, w: str, info: dict[str, Any], expiry: float | None, now_ms: float, sweep: int) -> None:
        """Keep what ``info`` (a worker hash's fields) says; the sweep calls this for hundreds of
        workers per poll, so it is written for speed."""
        get = info.get
        pool, host, state = get("pool") or "", get("host") or "?", get("state") or "unknown"
        beat, hb_ms, cpu, mem, host_cpu, host_mem = _numbers(get)
        if expiry is not None and expiry <= now_ms:
            derived = "dead"
        elif beat and now_ms - beat > 1.5 * (hb_ms or 5000.0):
            derived = "stale"
        else:
            derived = state
        lease_ms = (expiry - beat) if (expiry is not None and beat) else None
        old = self._entries.get(w)
        if old is None:
            self._order = None
            self._entries[w] = _Entry(pool, host, state, derived, cpu, mem, host_cpu, host_mem, sweep, hb_ms, lease_ms)
            return
        if old.pool != pool or old.host != host:
            self._order = None
            old.pool, old.host = pool, host
        old.state, old.derived, old.cpu, old.mem, old.host_cpu, old.host_mem = (state, derived, cpu, mem, host_cpu,
                                                                                host_mem)
        old.hb_ms = hb_ms
        old.lease_ms = lease_ms if lease_ms is not None else old.lease_ms
        old.seen = max(old.seen, sweep)

    def _forget(self, w: str) -> None:
        if self._entries.pop(w, None) is not None:
            self._order = None
            self._gone.append(w)

    def _healthy_order(self) -> list[str]:
        if self._order is None:
            entries = self._entries
            self._order = sorted(entries, key=lambda w: (entries[w].pool, entries[w].host, w))
        return self._order

    def _summary(self, plan: _Plan, fresh: dict[str, str], touched: Iterable[str]) -> FleetSummary:
        # the oldest leases were judged this poll: they say exactly who is dead or late, when some
        # of them were healthy (then nobody younger can be in trouble): the cache's words count then
        conclusive = len(plan.candidates) < min(plan.offset + plan.limit, MAX_TROUBLE) or (
            bool(plan.candidates) and plan.candidates[-1][0] not in plan.trouble)
        counts, entries = self._counts, self._entries
        for w in set(touched) | counts.troubled:
            e = entries.get(w)
            if e is None:
                counts.drop(w)
                continue
            state = fresh.get(w)
            if state is None:
                state = e.state if (conclusive and e.derived in TROUBLE) else e.derived
            counts.set(w, e.pool, e.host, state)
        if self._pool_figures is None or plan.cursor == 0:  # CPU and memory: once per sweep
            self._pool_figures, self._host_figures = _figures(entries)
        return FleetSummary(registered=plan.registered, states=self._states(counts.totals, plan.registered),
                            pools=tuple(self._group(p, counts.pools[p], self._pool_figures)
                                        for p in sorted(counts.pools)),
                            hosts=self._host_summaries(), offset=plan.offset, limit=plan.limit, known=len(counts.of))

    def _states(self, totals: dict[str, int], registered: int) -> tuple[tuple[str, int], ...]:
        known = sum(totals.values())
        if registered > known:  # registered but not read yet
            totals = {**totals, "unknown": totals.get("unknown", 0) + registered - known}
        return _ordered_states(totals)

    @staticmethod
    def _group(name: str, states: dict[str, int], figures: dict[str, Figures] | None) -> GroupSummary:
        f = (figures or {}).get(name) or (None, None, None, None, None, 0)
        return GroupSummary(name, sum(states.values()), _ordered_states(states), *f)

    def _host_summaries(self) -> tuple[GroupSummary, ...]:
        """Per host, rebuilt only for the hosts whose counts changed (and all once per sweep)."""
        counts = self._counts
        cache = self._host_cache
        refresh = counts.dirty_hosts if self._host_figures is self._hosts_from else set(counts.hosts)
        for host in refresh:
            if host in counts.hosts:
                cache[host] = self._group(host, counts.hosts[host], self._host_figures)
            else:
                cache.pop(host, None)
        counts.dirty_hosts = set()
        self._hosts_from = self._host_figures
        if counts.hosts_changed or self._hosts is None:
            self._host_order = sorted(cache)
            counts.hosts_changed = False
        self._hosts = tuple(cache[h] for h in self._host_order if h in cache)
        return self._hosts


def read_worker(client: Any, keys: Keys, worker_id: str) -> Any:
    """One worker's status (``WorkerStatus``), or None when it is not registered: one round trip."""
    from .snapshot import _worker_status  # the snapshot's one reading of a worker hash

    with client.pipeline(transaction=False) as pipe:
        pipe.zscore(keys.workers, worker_id)
        pipe.hgetall(keys.worker(worker_id))
        pipe.execute_command("TIME")  # a cluster pipeline refuses pipe.time()
        expiry, info, (seconds, micros) = pipe.execute()
    if expiry is None:
        return None
    return _worker_status(worker_id, float(expiry), info, seconds * 1000 + micros / 1000)
