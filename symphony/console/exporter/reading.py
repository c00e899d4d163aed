"""What the exporter reads from Redis, and the brief cache that lets any number of scrapers share it.

A scrape never reads Redis itself: it asks :class:`ReadingCache` for the latest
:class:`Reading`, which is read again only once it is older than the cache period (2 s by
default). Scrapes that arrive while a read is under way wait for it and share it; so ten
Prometheus servers (or ten dashboards hitting ``/metrics``) cost Redis what one does: one
snapshot (two round trips), one read of the duration histograms and one of the machine metrics
per period. A failed read is cached for the same period too, so an unreachable Redis is not
hammered by every scraper.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from symphony.engine import DurationHistogram, Engine, ScaleSetCpu, Snapshot, describe_error, redact, redis_problem

log = logging.getLogger("symphony.exporter")
CACHE_S = 2.0  # a reading is reused for this long
STALE_S = 30.0  # /healthz: figures older than this are stale
SCALE_SET_WINDOW_S = 600.0  # machine metrics: only the latest point is exported


@dataclass(frozen=True)
class Reading:
    """One read of everything the exporter exports (or why it failed)."""

    at: float  # monotonic clock, when the read finished
    read_s: float  # how long it took
    snapshot: Snapshot | None = None
    durations: tuple[DurationHistogram, ...] = ()
    scale_sets: tuple[ScaleSetCpu, ...] = ()
    error: str = ""  # redacted; "" when the read succeeded

    @property
    def ok(self) -> bool:
        return not self.error and self.snapshot is not None


def read_everything(engine: Engine, clock: Callable[[], float] = time.monotonic) -> Reading:
    """Read the snapshot, the stages' duration histograms and the machine metrics; never raises."""
    started = clock()
    try:
        snapshot = engine.snapshot(events=1)
        durations = engine.task_durations({q.role for q in snapshot.queues})
        scale_sets = engine.scale_set_cpu(SCALE_SET_WINDOW_S)
    except Exception as exc:  # noqa: BLE001 - Redis down, refused, timed out: reported, never raised
        finished = clock()
        problem = redis_problem(exc, engine.display) or describe_error(exc)
        return Reading(at=finished, read_s=finished - started, error=redact(problem))
    finished = clock()
    return Reading(at=finished, read_s=finished - started, snapshot=snapshot, durations=durations,
                   scale_sets=scale_sets)


class ReadingCache:
    """At most one read per ``max_age_s``, shared by every thread that asks."""

    def __init__(self, read: Callable[[], Reading], *, max_age_s: float = CACHE_S, stale_after_s: float = STALE_S,
                 clock: Callable[[], float] = time.monotonic):
        self._read = read
        self.max_age_s = max(0.0, max_age_s)
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: Reading | None = None
        self._good: Reading | None = None  # the latest successful reading
        self.reads = 0
        self.errors = 0

    def get(self) -> Reading:
        """The latest reading, read again first if it is older than the cache period."""
        with self._lock:  # a scrape that comes during a read waits for it, then shares it
            latest = self._latest
            if latest is not None and self._clock() - latest.at < self.max_age_s:
                return latest
            reading = self._read()
            self.reads += 1
            if reading.ok:
                if latest is not None and not latest.ok:
                    log.info("Redis answers again (after %d failed read(s))", self.errors)
                self._good = reading
            else:
                self.errors += 1
                if latest is None or latest.ok or latest.error != reading.error:  # once per change, not per read
                    log.warning("cannot read Redis: %s", reading.error)
            self._latest = reading
            return reading

    @property
    def good(self) -> Reading | None:
        """The latest reading that succeeded (None before the first)."""
        return self._good

    def age_s(self) -> float | None:
        """Seconds since the latest successful read finished (None: none yet)."""
        good = self._good
        return None if good is None else max(0.0, self._clock() - good.at)

    def health(self) -> tuple[bool, dict[str, object]]:
        """Whether Redis answered the latest read and its figures are fresh, and the details."""
        reading = self.get()
        age = self.age_s()
        fresh = age is not None and age <= self.stale_after_s
        ok = reading.ok and fresh
        detail: dict[str, object] = {
            "ok": ok, "redis": "reachable" if reading.ok else "unreachable",
            "snapshot_age_s": None if age is None else round(age, 3), "stale_after_s": self.stale_after_s,
        }
        if reading.error:
            detail["error"] = reading.error
        elif not fresh:
            detail["error"] = f"the figures are {age:.0f} s old (more than {self.stale_after_s:g} s)"
        return ok, detail
