"""Formatting shared by both front ends (the ``symphony`` CLI and the console): ages, durations,
percentages, sizes, rates, sparklines and progress bars, as plain strings.

Pure functions with no terminal library behind them (an import-linter contract keeps Textual and
Rich out), so the CLI prints the same figures the console draws.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from symphony.engine import parse_duration  # noqa: F401  (one parser: the engine's, for the CLI, the console and the collector)

BLOCKS = "▁▂▃▄▅▆▇█"
DASH = "–"
FULL, EMPTY = "█", "░"


def age(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``5m03s``, ``12m``, ``2.1h``, ``1.5d``; a dash when unknown."""
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
    """An ETA or a span: ``45s``, ``3m05s``, ``12m``, ``1h20m``; a dash when unknown."""
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


def bar_cells(done: int, total: int, width: int) -> int:
    """How many of ``width`` cells a progress bar fills for ``done`` of ``total`` (never all of
    them before everything is done, never none once something is)."""
    if width <= 0 or total <= 0 or done <= 0:
        return 0
    if done >= total:
        return width
    return min(width - 1, max(1, int(width * done / total)))


def bar(done: int, total: int, width: int = 20) -> str:
    """``█████░░░░░``: ``done`` of ``total`` in ``width`` cells."""
    filled = bar_cells(done, total, width)
    return FULL * filled + EMPTY * (width - filled)


def fraction(done: int, total: int) -> str:
    """``42%`` (``100%`` only when everything is done)."""
    if total <= 0:
        return DASH
    value = 100.0 * min(done, total) / total
    return f"{min(value, 99.0) if done < total else 100.0:.0f}%"


def join_counts(counts: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts if n) or "nothing"
