"""Scale sets: CPU per VM scale set (Azure Monitor) or per pool (workers' heartbeats), with a
sparkline of the last hour, and the source of every figure named."""
from __future__ import annotations

from typing import Any, Sequence

from rich.text import Text

from .. import fmt
from .base import TablePanel, right

SPARK_WIDTH = 24
WINDOW_S = 3600.0


def level_style(value: float | None) -> str:
    if value is None:
        return "dim"
    if value >= 90:
        return "bold red"
    if value >= 70:
        return "yellow"
    return "green"


class ScaleSetsPanel(TablePanel):
    TITLE = "Scale sets · CPU"
    CURSOR = "none"
    COLUMNS = (
        ("name", "scale set / pool", False),
        ("source", "source", False),
        ("hosts", "hosts", True),
        ("cpu", "now", True),
        ("spark", "history", False),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._span = ""

    def title_suffix(self) -> str:
        return self._span

    @classmethod
    def build(cls, series: Sequence[Any], now: float) -> tuple[list[tuple[str, tuple]], str]:
        """``series``: objects with ``name, source, current, points, instances`` (the engine's
        ``ScaleSetCpu`` or the console's heartbeat fallback). The sparkline covers the last hour,
        or the time since the first point when the history is younger than that."""
        firsts = [s.points[0][0] for s in series if s.points]
        start = max(now - WINDOW_S, min(min(firsts, default=now), now - 60.0))
        rows = []
        for s in series:
            spark = fmt.sparkline(tuple(s.points), start=start, end=now, width=SPARK_WIDTH)
            rows.append((f"{s.source}|{s.name}", (
                s.name,
                Text(s.source, style="cyan" if s.source == "azure monitor" else "dim"),
                right(s.instances),
                right(fmt.percent(s.current), level_style(s.current)),
                Text(spark, style=level_style(s.current)),
            )))
        return rows, f"last {fmt.duration(now - start)}"

    async def show(self, built: tuple[list[tuple[str, tuple]], str]) -> None:
        rows, self._span = built
        await self.sync_async(rows)
        self.set_title()

    def update_data(self, series: Sequence[Any], now: float) -> None:
        rows, self._span = self.build(series, now)
        self.sync(rows)
        self.set_title()
