"""Scale sets: CPU per VM scale set (Azure Monitor) or per pool (workers' heartbeats), with a
sparkline of the last hour that fills the width its column gets, and the source of every
figure named."""
from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

from .. import fmt
from ..sources import MainSource
from .base import Column, TableData, TablePanel, left, right

SPARK_WIDTH = 24  # the sparkline's natural width (it shrinks or grows with its column)
WINDOW_S = 3600.0


def level_style(value: float | None) -> str:
    if value is None:
        return "dim"
    if value >= 90:
        return "bold red"
    if value >= 70:
        return "yellow"
    return "green"


@dataclass(frozen=True)
class Spark:
    """A sparkline cell: (time, percent) points between ``start`` and ``end``, drawn at the width
    its column gets (one character per time bucket)."""

    points: tuple[tuple[float, float], ...]
    start: float
    end: float
    style: str = ""
    natural_width: int = SPARK_WIDTH

    def __str__(self) -> str:
        return fmt.sparkline(self.points, start=self.start, end=self.end, width=self.natural_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(4, self.natural_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(1, options.max_width)
        yield Text(fmt.sparkline(self.points, start=self.start, end=self.end, width=width), style=self.style,
                   no_wrap=True)


class ScaleSetsPanel(TablePanel[MainSource]):
    TITLE = "Scale sets · CPU"
    CURSOR = "none"
    COLUMNS = (
        Column("name", "scale set / pool"),
        Column("source", "source", priority=2),
        Column("hosts", "hosts", right=True, priority=1),
        Column("cpu", "now", right=True),
        Column("spark", "history", flex=True, min_width=8),
    )

    @classmethod
    def prepare(cls, source: MainSource, view: object = None) -> TableData:
        """``source.scale_sets``: objects with ``name, source, current, points, instances`` (the
        engine's ``ScaleSetCpu`` or the console's heartbeat fallback). The sparkline covers the last
        hour, or the time since the first point when the history is younger than that."""
        series, now = source.scale_sets, source.snapshot.taken_at
        firsts = [s.points[0][0] for s in series if s.points]
        start = max(now - WINDOW_S, min(min(firsts, default=now), now - 60.0))
        rows = []
        for s in series:
            rows.append((f"{s.source}|{s.name}", (
                left(s.name),
                left(s.source, "cyan" if s.source == "azure monitor" else "dim"),
                right(s.instances),
                right(fmt.percent(s.current), level_style(s.current)),
                Spark(tuple(s.points), start, now, level_style(s.current)),
            )))
        return TableData.of(cls.COLUMNS, rows, f"last {fmt.duration(now - start)}")
