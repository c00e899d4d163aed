"""How long completed tasks took, per stage: a histogram the workers keep in Redis.

``finish.lua`` adds every completed task's duration to its stage's histogram
(``symphony:metrics:durations:<stage>``, a HASH): one count per bucket, the field being the
bucket's upper bound in milliseconds (``inf`` for the last), and ``sum_ms``. It moves once per
finish call, like the counters, so its size is fixed (15 buckets and a sum per stage) however
many tasks run. The bounds are defined in ``finish.lua`` only; this reader takes them from the
field names, so it needs no copy of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import redis

from .keys import Keys

SUM_FIELD = "sum_ms"
INF_FIELD = "inf"


@dataclass(frozen=True)
class DurationHistogram:
    """The completed task durations of one stage, since its first completion.

    ``buckets`` are cumulative, as Prometheus wants them: ``(upper bound in seconds, tasks that
    took at most that long)``, in increasing order, the last bound ``inf`` (every task)."""

    stage: str
    buckets: tuple[tuple[float, int], ...]
    sum_s: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0


def histogram_from_fields(stage: str, fields: dict[str, str]) -> DurationHistogram:
    """A :class:`DurationHistogram` from the HASH as Redis holds it (per-bucket counts)."""
    counts: list[tuple[float, int]] = []
    total_ms = 0.0
    for name, value in fields.items():
        try:
            number = int(value)
        except (TypeError, ValueError):
            continue
        if name == SUM_FIELD:
            total_ms = float(number)
            continue
        try:
            bound = math.inf if name == INF_FIELD else float(name) / 1000.0
        except ValueError:
            continue
        counts.append((bound, number))
    counts.sort()
    if counts and counts[-1][0] != math.inf:
        counts.append((math.inf, 0))
    cumulative, running = [], 0
    for bound, number in counts:
        running += max(0, number)
        cumulative.append((bound, running))
    return DurationHistogram(stage=stage, buckets=tuple(cumulative), sum_s=total_ms / 1000.0)


def read_durations(client: redis.Redis, keys: Keys, stages: Iterable[str]) -> tuple[DurationHistogram, ...]:
    """The histograms of ``stages`` (sorted by name; stages without completions left out), in
    one round trip."""
    names = sorted(set(stages))
    if not names:
        return ()
    with client.pipeline(transaction=False) as pipe:
        for stage in names:
            pipe.hgetall(keys.durations(stage))
        replies = pipe.execute()
    return tuple(histogram_from_fields(stage, fields) for stage, fields in zip(names, replies) if fields)
