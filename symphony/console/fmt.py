"""Formatting for the console: ages, percentages, sizes, rates, sparklines (pure functions)."""
from __future__ import annotations

from typing import Iterable, Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
DASH = "–"


def age(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``5m``, ``2.1h``; a dash when unknown."""
    if seconds is None:
        return DASH
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s" if seconds < 600 else f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def duration(seconds: float | None) -> str:
    """An ETA or a span: ``45s``, ``3m``, ``1h20m``; a dash when unknown."""
    if seconds is None:
        return DASH
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds < 600 else f"{seconds // 60}m"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.0f}%"


def size(n: int | None) -> str:
    if n is None:
        return DASH
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit in ("B", "K", "M") else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"  # pragma: no cover


def rate(per_minute: float | None) -> str:
    if per_minute is None:
        return DASH
    if per_minute >= 100:
        return f"{per_minute:.0f}/min"
    return f"{per_minute:.1f}/min"


def count(n: int) -> str:
    return f"{n:,}"


def sparkline(points: Sequence[tuple[float, float]], *, start: float, end: float, width: int = 24,
              low: float = 0.0, high: float = 100.0) -> str:
    """A fixed-width sparkline of (time, value) points between ``start`` and ``end``.

    Each character is one time bucket showing the highest value in it; buckets without data
    are blank, so a gap in the data shows as a gap.
    """
    if width <= 0:
        return ""
    if end <= start:
        end = start + 1.0
    buckets: list[float | None] = [None] * width
    span = (end - start) / width
    for t, value in points:
        if t < start or t > end or value is None:
            continue
        index = min(width - 1, int((t - start) / span))
        current = buckets[index]
        buckets[index] = value if current is None else max(current, value)
    out = []
    scale = (high - low) or 1.0
    for value in buckets:
        if value is None:
            out.append(" ")
            continue
        level = (min(high, max(low, value)) - low) / scale
        out.append(BLOCKS[min(len(BLOCKS) - 1, int(level * (len(BLOCKS) - 1) + 0.5))])
    return "".join(out)


def join_counts(counts: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts if n) or "nothing"
