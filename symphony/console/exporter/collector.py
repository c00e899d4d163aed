"""The exporter's Prometheus collector: metric families built from one :class:`Reading`.

Counters never go backwards. The figures behind them only ever grow in Redis: every script
that records a completion, failure, retry or reclaim adds to ``symphony:stats:<session>``
atomically with the move it counts, and the failure totals add the items now failed to those
that left that state when enqueued again (``cleared_failed``, ...). With AOF persistence Redis
keeps them across a restart (``appendfsync everysec`` can lose the last second of writes). What
is left is guarded here: when a counter read from Redis is lower than the last one read (a
Redis restarted from an older save, a restore), the difference is kept as an offset and added
from then on, so the exported counter stays where it was and grows again with the new counts.
An exporter restart starts from Redis's figures, which Prometheus treats as an ordinary
counter reset (``rate`` and ``increase`` handle it). Offsets of series gone for an hour (a
purged session) are forgotten.
"""
from __future__ import annotations

import gzip
import math
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import generate_latest

from symphony.engine import SessionState, Snapshot

from . import catalogue as c
from .reading import Reading, ReadingCache

WORKER_STATES = ("starting", "busy", "idle", "stopping", "quarantined", "stale", "dead")
ALIVE = ("starting", "busy", "idle", "quarantined", "stale")  # a late heartbeat may still be a live worker
FORGET_AFTER_S = 3600.0
SLURM_LIVE_SET = "PENDING_AND_RUNNING"  # exported as its two parts, pending and running


class Monotonic:
    """Keeps exported counters from going backwards when the figures in Redis do."""

    def __init__(self, forget_after_s: float = FORGET_AFTER_S, clock: Callable[[], float] = time.monotonic):
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._series: dict[tuple[str, tuple[str, ...]], list[float]] = {}  # key -> [last raw, offset, seen]
        self._swept = clock()

    def value(self, name: str, labels: tuple[str, ...], raw: float) -> float:
        key = (name, labels)
        now = self._clock()
        entry = self._series.get(key)
        if entry is None:
            self._series[key] = [raw, 0.0, now]
            return raw
        last, offset, _ = entry
        if raw < last:
            offset += last - raw
        entry[0], entry[1], entry[2] = raw, offset, now
        return raw + offset

    def sweep(self) -> None:
        now = self._clock()
        if now - self._swept < 60:
            return
        self._swept = now
        for key in [k for k, e in self._series.items() if now - e[2] > self.forget_after_s]:
            del self._series[key]


class _Families:
    """What ``generate_latest`` needs of a registry: the families to write."""

    def __init__(self, families: list[Any]):
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


class SymphonyCollector:
    """A prometheus-client collector over a :class:`ReadingCache`.

    The families of a reading are built once, and written out (text, and gzip) once, however
    many scrapes share that reading: at 1,000 sessions x 4 stages that is most of a scrape's
    cost (docs/benchmarks.md)."""

    def __init__(self, cache: ReadingCache, *, monotonic: Monotonic | None = None):
        self.cache = cache
        self.monotonic = monotonic or Monotonic()
        self._lock = threading.Lock()
        self._built: Reading | None = None
        self._families: list[Any] = []
        self._text: bytes | None = None
        self._gzip: bytes | None = None

    def describe(self) -> Iterable[Any]:
        """The families, without reading Redis (prometheus-client asks at registration)."""
        return [m.family() for m in c.CATALOGUE]

    def collect(self) -> Iterator[Any]:
        reading = self.cache.get()
        yield from self.families(reading)
        yield from self.exporter_families(reading)

    def families(self, reading: Reading) -> list[Any]:
        """The families of ``reading``, built once however many scrapes share it. A reading
        older than one already built is never applied (its counters would look like a drop).
        While Redis fails, nothing but the exporter's own metrics (``symphony_up`` 0) is exported:
        old figures would pass for current ones."""
        if not reading.ok:
            return []
        with self._lock:
            return self._families_of(reading)

    def _families_of(self, reading: Reading) -> list[Any]:
        if self._built is None or reading.at > self._built.at:
            self._families = build_families(reading, self.monotonic)
            self.monotonic.sweep()
            self._built, self._text, self._gzip = reading, None, None
        return self._families

    def render(self, reading: Reading, *, extra: list[Any] = (), gzipped: bool = False) -> bytes:
        """The text exposition of ``reading`` and the exporter's own metrics (and ``extra``
        families), gzip-compressed if asked (two gzip members, which every reader takes as one)."""
        own = generate_latest(_Families(list(self.exporter_families(reading)) + list(extra)))
        if not reading.ok:
            return gzip.compress(own, 6) if gzipped else own
        with self._lock:
            families = self._families_of(reading)
            if self._text is None:
                self._text = generate_latest(_Families(families))
            if not gzipped:
                return self._text + own
            if self._gzip is None:
                self._gzip = gzip.compress(self._text, 6)
            return self._gzip + gzip.compress(own, 6)

    def exporter_families(self, reading: Reading) -> list[Any]:
        up = c.UP.family()
        up.add_metric([], 1.0 if reading.ok else 0.0)
        age = c.SNAPSHOT_AGE.family()
        seconds = self.cache.age_s()
        if seconds is not None:
            age.add_metric([], seconds)
        read = c.READ_SECONDS.family()
        read.add_metric([], reading.read_s)
        reads = c.READS.family()
        reads.add_metric([], self.cache.reads)
        errors = c.READ_ERRORS.family()
        errors.add_metric([], self.cache.errors)
        return [up, age, read, reads, errors]


def build_families(reading: Reading, monotonic: Monotonic) -> list[Any]:
    snap = reading.snapshot
    assert snap is not None
    families: list[Any] = []
    families += queue_families(snap, monotonic)
    families += session_families(snap)
    families += worker_families(snap, monotonic)
    families += machine_families(reading)
    families += redis_families(snap)
    families += slurm_families(snap)
    families.append(duration_family(reading))
    return families


# (metric, QueueStatus attribute) for every per-queue figure
QUEUE_GAUGES = ((c.TASKS_QUEUED, "queued"), (c.TASKS_DELAYED, "delayed"), (c.TASKS_IN_FLIGHT, "in_flight"),
                (c.ITEMS_COMPLETED, "completed"), (c.ITEMS_FAILED, "failed"), (c.ITEMS_TIMED_OUT, "timed_out"), (c.ITEMS_CANCELLED, "cancelled"))
QUEUE_COUNTERS = ((c.ENQUEUED, "enqueued"), (c.COMPLETED, "completions"), (c.FAILED, "failures"),
                  (c.TIMED_OUT, "timeouts"), (c.CANCELLED, "cancellations"), (c.RETRIED, "retried"),
                  (c.RECLAIMED, "reclaimed"), (c.DEAD_LETTERED, "dead_lettered"))


def queue_families(snap: Snapshot, monotonic: Monotonic) -> list[Any]:
    gauges = [(m.family(), attr) for m, attr in QUEUE_GAUGES]
    counters = [(m, m.family(), attr) for m, attr in QUEUE_COUNTERS]
    for q in snap.queues:
        labels = [q.session, q.role, q.pool]
        for family, attr in gauges:
            family.add_metric(labels, getattr(q, attr))
        key = tuple(labels)
        for metric, family, attr in counters:
            family.add_metric(labels, monotonic.value(metric.name, key, getattr(q, attr)))
    return [f for f, _ in gauges] + [f for _, f, _ in counters]


def session_families(snap: Snapshot) -> list[Any]:
    items, completed, progress = c.SESSION_ITEMS.family(), c.SESSION_COMPLETED.family(), c.SESSION_PROGRESS.family()
    state, created = c.SESSION_STATE.family(), c.SESSION_CREATED.family()
    states = [str(s) for s in SessionState]
    for s in snap.sessions:
        items.add_metric([s.name], s.items)
        completed.add_metric([s.name], s.completed)
        progress.add_metric([s.name], s.progress)
        created.add_metric([s.name], s.created)
        current = str(s.state)
        for name in states + ([current] if current not in states else []):
            state.add_metric([s.name, name], 1.0 if name == current else 0.0)
    return [items, completed, progress, state, created]


def worker_families(snap: Snapshot, monotonic: Monotonic) -> list[Any]:
    by_pool: dict[str, dict[str, int]] = {}
    for q in snap.queues:  # a pool with work and no worker shows as zeros
        by_pool.setdefault(q.pool, {})
    serving: dict[str, int] = {q.role: 0 for q in snap.queues}
    per_worker = [(m, m.family()) for m in (c.HEARTBEAT_AGE, c.HEARTBEAT_INTERVAL, c.TASK_AGE, c.WORKER_CPU,
                                            c.WORKER_RSS)]
    done = c.WORKER_COMPLETED.family()
    for w in snap.workers:
        counts = by_pool.setdefault(w.pool, {})
        counts[w.state] = counts.get(w.state, 0) + 1
        if w.state in ALIVE:
            for role in w.roles:
                serving[role] = serving.get(role, 0) + 1
        labels = [w.id, w.pool, w.host]
        values = (w.heartbeat_age_s, w.heartbeat_s, w.current_age_s, w.cpu_percent, w.rss_bytes)
        for (_, family), value in zip(per_worker, values):
            if value is not None:
                family.add_metric(labels, value)
        done.add_metric(labels, monotonic.value(c.WORKER_COMPLETED.name, tuple(labels), w.completed))
    workers = c.WORKERS.family()
    for pool in sorted(by_pool):
        counts = by_pool[pool]
        for state in WORKER_STATES + tuple(sorted(set(counts) - set(WORKER_STATES))):
            workers.add_metric([pool, state], counts.get(state, 0))
    stage = c.STAGE_WORKERS.family()
    for role in sorted(serving):
        stage.add_metric([role], serving[role])
    return [workers, stage, *(f for _, f in per_worker), done]


def machine_families(reading: Reading) -> list[Any]:
    snap = reading.snapshot
    assert snap is not None
    cpu, memory = c.HOST_CPU.family(), c.HOST_MEMORY.family()
    latest: dict[str, Any] = {}
    for w in snap.workers:  # one series per host: the worker that beat last speaks for it
        if w.host_cpu_percent is None or w.state == "dead":
            continue
        best = latest.get(w.host)
        if best is None or (w.heartbeat_age_s or math.inf) < (best.heartbeat_age_s or math.inf):
            latest[w.host] = w
    for host in sorted(latest):
        w = latest[host]
        cpu.add_metric([host, w.pool], w.host_cpu_percent)
        if w.host_memory_percent is not None:
            memory.add_metric([host, w.pool], w.host_memory_percent)
    scale_cpu, instances = c.SCALE_SET_CPU.family(), c.SCALE_SET_INSTANCES.family()
    for s in reading.scale_sets:
        if s.current is not None:
            scale_cpu.add_metric([s.name, s.source], s.current)
        instances.add_metric([s.name, s.source], s.instances)
    return [cpu, memory, scale_cpu, instances]


def redis_families(snap: Snapshot) -> list[Any]:
    used, grace, limit = c.REDIS_USED_MEMORY.family(), c.REDIS_GRACE.family(), c.REDIS_MAXMEMORY.family()
    info, evict, oom, problems = (c.REDIS_INFO.family(), c.REDIS_CAN_EVICT.family(), c.REDIS_OUT_OF_MEMORY.family(),
                                  c.REDIS_PROBLEMS.family())
    server = snap.server
    memory = snap.used_memory if snap.used_memory is not None else (server.used_memory if server else None)
    if memory is not None:
        used.add_metric([], float(memory))
    grace.add_metric([], snap.grace_s)
    if server is not None:  # a user that may not run INFO leaves what it cannot know out
        info.add_metric([server.kind, server.version, server.maxmemory_policy or "unknown"], 1.0)
        problems.add_metric([], len(server.problems))
        for family, value in ((limit, server.maxmemory), (evict, server.can_evict), (oom, server.out_of_memory)):
            if value is not None:
                family.add_metric([], float(value))
    return [used, grace, limit, info, evict, oom, problems]


def slurm_families(snap: Snapshot) -> list[Any]:
    jobs, polled = c.SLURM_JOBS.family(), c.SLURM_POLL_AGE.family()
    for tag in snap.slurm:
        labels = [tag.tag, tag.pool, tag.cluster]
        jobs.add_metric([*labels, "pending"], tag.pending)
        jobs.add_metric([*labels, "running"], tag.running)
        for name, count in sorted(tag.counts.items()):
            if name != SLURM_LIVE_SET:
                jobs.add_metric([*labels, name.lower()], count)
        if tag.polled:
            polled.add_metric(labels, max(0.0, snap.taken_at - tag.polled))
    return [jobs, polled]


def duration_family(reading: Reading) -> Any:
    family = c.DURATION.family()
    for h in reading.durations:
        buckets = [("+Inf" if math.isinf(bound) else f"{bound:g}", count) for bound, count in h.buckets]
        family.add_metric([h.stage], buckets, h.sum_s)
    return family
