"""What the console remembers between snapshots: per-queue throughput and ETA, and CPU history.

Snapshots are immutable and carry the *server* time they were taken at, so rates computed
here do not depend on the console's clock. Nothing in this module touches Redis or Textual.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from symphony.engine import Snapshot

RATE_WINDOW_S = 60.0
MIN_RATE_SPAN_S = 2.0


@dataclass(frozen=True)
class QueueFlow:
    """Throughput and ETA of one ``role:session`` queue."""

    per_minute: float | None  # completions per minute over the last minute (None: not enough data yet)
    remaining: int  # items that have not finished this stage yet (done, failed, timed out or cancelled)
    eta_s: float | None  # None: unknown (no throughput); 0: nothing left

    @property
    def done(self) -> bool:
        return self.remaining <= 0


class QueueRates:
    """Completions per queue over a sliding window, from successive snapshots."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def update(self, snapshot: Snapshot) -> None:
        now = snapshot.taken_at
        seen = set()
        for q in snapshot.queues:
            key = q.name
            seen.add(key)
            samples = self._samples.setdefault(key, deque())
            if samples and (q.completed < samples[-1][1] or now < samples[-1][0]):
                samples.clear()  # the counters were reset (session re-created): start over
            if samples and samples[-1][0] == now:
                continue
            samples.append((now, q.completed))
            # keep one sample older than the window, so the rate covers the whole minute
            while len(samples) > 2 and samples[1][0] <= now - self.window_s:
                samples.popleft()
        for key in set(self._samples) - seen:
            del self._samples[key]

    def per_minute(self, key: str) -> float | None:
        samples = self._samples.get(key)
        if not samples or len(samples) < 2:
            return None
        t0, c0 = samples[0]
        t1, c1 = samples[-1]
        if t1 - t0 < MIN_RATE_SPAN_S:
            return None
        return max(0, c1 - c0) * 60.0 / (t1 - t0)

    def flows(self, snapshot: Snapshot) -> dict[str, QueueFlow]:
        items = {s.name: s.items for s in snapshot.sessions}
        out = {}
        for q in snapshot.queues:
            finished = q.completed + q.failed + q.timed_out + q.cancelled
            remaining = max(0, items.get(q.session, 0) - finished)
            per_minute = self.per_minute(q.name)
            if remaining == 0:
                eta = 0.0
            elif per_minute:
                eta = remaining * 60.0 / per_minute
            else:
                eta = None
            out[q.name] = QueueFlow(per_minute, remaining, eta)
        return out


@dataclass(frozen=True)
class CpuSeries:
    """CPU of one VM scale set or worker pool; the same shape as the engine's ``ScaleSetCpu``."""

    name: str
    source: str  # "azure monitor" | "worker heartbeats"
    current: float | None
    points: tuple[tuple[float, float], ...]  # (server time, percent)
    instances: int


HEARTBEATS = "worker heartbeats"


def pool_cpu(snapshot: Snapshot) -> dict[str, tuple[float | None, int]]:
    """Mean host CPU per pool from the workers' heartbeats: one value per host (the hosts'
    workers all report the same machine), dead workers left out. Returns pool -> (cpu, hosts).
    A paged snapshot's fleet summary has these per pool already (every worker, not the page)."""
    if snapshot.fleet is not None and snapshot.fleet.limit is not None:
        return {p.name: (p.host_cpu, p.hosts) for p in snapshot.fleet.pools}
    per_pool: dict[str, dict[str, float | None]] = {}
    for w in snapshot.workers:
        if w.state == "dead":
            continue
        hosts = per_pool.setdefault(w.pool or "(no pool)", {})
        value = w.host_cpu_percent
        previous = hosts.get(w.host)
        hosts[w.host] = value if previous is None else (previous if value is None else max(previous, value))
    out = {}
    for pool, hosts in per_pool.items():
        values = [v for v in hosts.values() if v is not None]
        out[pool] = ((sum(values) / len(values)) if values else None, len(hosts))
    return out


class HeartbeatCpu:
    """The fallback when no Azure Monitor collector is configured: CPU per pool from the workers'
    heartbeats, with an in-memory history (the last ``window_s`` seconds) for the sparkline."""

    def __init__(self, window_s: float = 3600.0):
        self.window_s = window_s
        self._points: dict[str, deque[tuple[float, float]]] = {}

    def update(self, snapshot: Snapshot) -> tuple[CpuSeries, ...]:
        now = snapshot.taken_at
        current = pool_cpu(snapshot)
        for pool, (value, _) in current.items():
            points = self._points.setdefault(pool, deque())
            if value is not None and (not points or points[-1][0] < now):
                points.append((now, value))
        out = []
        for pool in sorted(set(self._points) | set(current)):
            points = self._points.get(pool, deque())
            while points and points[0][0] < now - self.window_s:
                points.popleft()
            if not points and pool not in current:
                self._points.pop(pool, None)
                continue
            value, hosts = current.get(pool, (None, 0))
            out.append(CpuSeries(pool, HEARTBEATS, value, tuple(points), hosts))
        return tuple(out)
