"""Workers: who is doing what, for how long, and whether they are still alive. Enter on a row
opens the worker's detail."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding

from symphony.engine import WorkerStatus

from .. import fmt
from ..sources import MainSource
from .base import Clip, Column, TableData, TablePanel, left, right

STATE_STYLE = {
    "busy": "bold green",
    "idle": "",
    "stopping": "yellow",
    "draining": "bold yellow",
    "drained": "yellow",
    "quarantined": "bold magenta",
    "stale": "bold yellow",
    "dead": "bold white on red",
}
# Words, not only colours: the state column says what is wrong.
STATE_WORDS = {
    "stale": "STALE (late beat)",
    "dead": "DEAD (lease lapsed)",
    "draining": "draining",
    "drained": "drained (idle)",
    "quarantined": "SET ASIDE (host fails every task)",
}
STATE_ORDER = {"dead": 0, "stale": 1, "quarantined": 2, "stopping": 3, "draining": 3, "drained": 3, "busy": 4,
               "idle": 5}
MIN_PAGE = 20  # rows of the worker table read per poll at least (one page: the panel's height)


@dataclass(frozen=True)
class WorkerPage:
    """Which rows of the worker table the poll reads: the dead and stale first, then by pool,
    host and id (the engine's paged snapshot reads only these workers' hashes)."""

    offset: int = 0
    limit: int = 50

    @property
    def span(self) -> tuple[int, int]:
        return self.offset, self.limit


def worker_cells(w: WorkerStatus) -> tuple:
    style = STATE_STYLE.get(w.state, "")
    state = left(STATE_WORDS.get(w.state, w.state), style)
    late = w.state in ("stale", "dead")
    beat = right(fmt.age(w.heartbeat_age_s) + " ago" if w.heartbeat_age_s is not None else fmt.DASH,
                 "bold red" if w.state == "dead" else ("bold yellow" if late else ""))
    memory = fmt.percent(w.memory_percent)
    if w.rss_bytes:
        memory = f"{fmt.size(w.rss_bytes)} {memory}"
    return (
        left(w.id, "dim" if w.state == "dead" else ""),
        left(w.host),
        left(w.pool or fmt.DASH),
        right(w.pid or fmt.DASH),
        state,
        Clip(Text(w.current, no_wrap=True)) if w.current else Clip(Text(fmt.DASH, style="dim")),
        right(fmt.age(w.current_age_s) if w.current else fmt.DASH),
        beat,
        right(fmt.percent(w.cpu_percent)),
        right(fmt.percent(w.host_cpu_percent), "dim" if w.host_cpu_percent is None else ""),
        right(memory),
        right(fmt.count(w.completed)),
    )


class WorkersPanel(TablePanel[MainSource]):
    TITLE = "Workers"
    BINDINGS = [Binding("right_square_bracket", "page(1)", "Next workers", show=False),
                Binding("left_square_bracket", "page(-1)", "Previous workers", show=False)]
    COLUMNS = (
        Column("worker", "worker"),
        Column("host", "host", priority=3),
        Column("pool", "pool", priority=6),
        Column("pid", "pid", right=True, priority=8),
        Column("state", "state"),
        Column("task", "current task", flex=True, min_width=12),
        Column("for", "for", right=True, priority=2),
        Column("beat", "last beat", right=True, priority=4),
        Column("cpu", "CPU", right=True, priority=5),
        Column("host_cpu", "host CPU", right=True, priority=7),
        Column("mem", "memory", right=True, priority=9),
        Column("done", "done", right=True, priority=1),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.page_offset = 0
        self.registered = 0  # from the last poll, for paging

    def page_size(self) -> int:
        """One page: the rows the panel can show (all of the screen when zoomed), at least MIN_PAGE."""
        try:
            height = self.size.height
        except Exception:  # noqa: BLE001 - not mounted
            height = 0
        return max(MIN_PAGE, height)

    def on_resize(self) -> None:
        super().on_resize()
        if self.registered > len(self._cells) and self.page_size() > len(self._cells):
            poll_now = getattr(self.app, "poll_now", None)  # zoomed: fill the taller panel at once
            if poll_now is not None:
                poll_now()

    def view_settings(self) -> WorkerPage:
        return WorkerPage(self.page_offset, self.page_size())

    def action_page(self, step: int) -> None:
        """``]`` / ``[``: the next or previous page of workers (read at once)."""
        size = self.page_size()
        last = max(0, (max(0, self.registered - 1) // size) * size)
        offset = min(last, max(0, self.page_offset + step * size))
        if offset != self.page_offset:
            self.page_offset = offset
            poll_now = getattr(self.app, "poll_now", None)
            if poll_now is not None:
                poll_now()

    async def draw(self, data: TableData) -> None:
        self.registered = data.total
        await super().draw(data)

    @classmethod
    def prepare(cls, source: MainSource, view: WorkerPage | None = None) -> TableData:
        snapshot = source.snapshot
        page = view if isinstance(view, WorkerPage) else WorkerPage()
        fleet = snapshot.fleet
        if fleet is not None and fleet.limit is not None:  # the engine read only this page, in order
            workers = list(snapshot.workers)
            registered, states = fleet.registered, fleet.states
            offset = fleet.offset
        else:  # every worker: trouble first (dead and stale stay put), then stable
            ordered = sorted(snapshot.workers, key=lambda w: (w.state not in ("dead", "stale"), w.pool, w.host, w.id))
            counts: dict[str, int] = {}
            for w in ordered:
                counts[w.state] = counts.get(w.state, 0) + 1
            registered = len(ordered)
            states = tuple(sorted(counts.items(), key=lambda i: STATE_ORDER.get(i[0], 9)))
            offset = min(page.offset, max(0, registered - 1))
            workers = ordered[offset:offset + page.limit]
        parts = [f"{registered} registered"] + [f"{n} {s}" for s, n in states]
        if registered > len(workers):
            parts.append(f"rows {offset + 1 if workers else 0}-{offset + len(workers)}")
        rows = [(w.id, worker_cells(w)) for w in workers]
        hint = "Enter: the selected worker's detail" if workers else ""
        if registered > len(workers):
            hint = (hint + " · " if hint else "") + "] [ next/previous workers"
        data = TableData.of(cls.COLUMNS, rows, ", ".join(parts), hint)
        return TableData(data.rows, data.title, data.subtitle, data.widths, total=registered)
