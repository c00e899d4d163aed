"""Queues: one row per ``role:session`` with counts, throughput over the last minute and ETA.

:meth:`QueuesPanel.prepare` (pure, run in the poll thread) turns a snapshot into frozen rows with
their sort values, and renders the cells of the rows the current view (filter and sort, taken on
the UI thread) shows; the draw half only filters, orders and diffs them into the table. The
table holds at most ``MAX_ROWS`` rows (the first ones in the current order; the title says how
many match), so drawing costs the same with 10 queues or 10,000: filter (``/``) or sort (``s``)
to see the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from rich.text import Text

from symphony.engine import QueueStatus, SessionState

from .. import fmt
from ..history import QueueFlow
from ..sources import MainSource
from .base import Clip, Column, TableData, TablePanel, right

MAX_ROWS = 500


@dataclass(frozen=True)
class QueueView:
    """The operator's view of the queues (taken on the UI thread, read by the poll thread)."""

    filter_text: str = ""
    sort_key: str | None = None
    reverse: bool = False


@dataclass(frozen=True, eq=False)
class QueueRow:
    q: QueueStatus
    flow: QueueFlow | None
    state: str  # the session's
    sort: Mapping[str, Any] = field(repr=False)
    cells: tuple | None = None  # rendered in the poll thread for the rows its view showed

    @property
    def key(self) -> str:  # role:session
        return self.q.name

    @property
    def session(self) -> str:
        return self.q.session

    @property
    def pool(self) -> str:
        return self.q.pool or ""

    def rendered(self) -> tuple:
        return self.cells if self.cells is not None else queue_cells(self.q, self.flow, self.state)


@dataclass(frozen=True)
class QueueData:
    rows: tuple[QueueRow, ...] = ()


def select(rows: tuple[QueueRow, ...] | list[QueueRow], view: QueueView,
           limit: int = MAX_ROWS) -> tuple[list[QueueRow], int]:
    """The rows a view shows, in order (at most ``limit``), and how many matched the filter."""
    needle = view.filter_text.lower()
    selected = list(rows)
    if needle:
        selected = [r for r in selected if needle in r.key.lower() or needle in r.pool.lower()]
    if view.sort_key:
        sort = SORTS[view.sort_key]
        selected.sort(key=lambda r: r.sort[view.sort_key], reverse=sort.descending != view.reverse)
    return selected[:limit], len(selected)


@dataclass(frozen=True)
class SortColumn:
    key: str
    label: str
    value: Callable[[QueueStatus, QueueFlow | None], object]
    descending: bool = True  # the natural direction: biggest first


def _eta(q: QueueStatus, f: QueueFlow | None) -> float:
    if f is None or f.eta_s is None:
        return float("inf")
    return f.eta_s


SORTS: dict[str, SortColumn] = {s.key: s for s in (
    SortColumn("queue", "name", lambda q, f: (q.session, q.role), descending=False),
    SortColumn("queued", "queued", lambda q, f: q.queued + q.delayed),
    SortColumn("in_flight", "in flight", lambda q, f: q.in_flight),
    SortColumn("done", "done", lambda q, f: q.completed),
    SortColumn("failed", "failed", lambda q, f: q.failed + q.timed_out),
    SortColumn("rate", "throughput", lambda q, f: (f.per_minute or 0.0) if f else 0.0),
    SortColumn("eta", "ETA", _eta, descending=False),
)}
SORT_CYCLE = (None, "queued", "in_flight", "done", "failed", "rate", "eta", "queue")
HEADER_SORTS = {"retry": "queued", "pool": "queue"}


def queue_cells(q: QueueStatus, flow: QueueFlow | None, state: str) -> tuple:
    name = Text(q.name, no_wrap=True)
    if state != SessionState.ACTIVE:
        name.stylize("dim")
        name.append(f" ({state})", style="italic")
    elif q.paused:
        name.append(" (paused)", style="bold yellow")
    failed = q.failed + q.timed_out
    failed_text = str(failed) + (f" ({q.timed_out} t/o)" if q.timed_out else "")
    finished = False
    if flow is None or state == SessionState.CANCELLED:
        rate, eta = fmt.DASH, fmt.DASH
    else:
        rate = fmt.rate(flow.per_minute)
        finished = flow.done
        eta = "done" if finished else fmt.duration(flow.eta_s)
    return (
        Clip(name),
        Text(q.pool or fmt.DASH, no_wrap=True),
        right(fmt.count(q.queued)),
        right(fmt.count(q.delayed) if q.delayed else fmt.DASH, "yellow" if q.delayed else "dim"),
        right(fmt.count(q.in_flight), "bold cyan" if q.in_flight else ""),
        right(fmt.count(q.completed), "green" if q.completed else ""),
        right(failed_text, "bold red" if failed else "dim"),
        right(rate),
        right(eta, "green" if finished else ""),
        right(f"{fmt.count(q.stage_running)}/{fmt.count(q.max_running)}" if q.max_running is not None else fmt.DASH,
              ("bold yellow" if q.stage_running >= q.max_running else "") if q.max_running is not None else "dim"),
        right(q.rate or fmt.DASH, "" if q.rate else "dim"),
    )


class QueuesPanel(TablePanel[MainSource]):
    TITLE = "Queues"
    COLUMNS = (
        Column("queue", "queue (role:session)", flex=True, min_width=20),
        Column("pool", "pool", priority=6),
        Column("queued", "queued", right=True),
        Column("retry", "retrying", right=True, priority=5),
        Column("in_flight", "running", right=True, priority=1),
        Column("done", "done", right=True),
        Column("failed", "failed", right=True),
        Column("rate", "last min", right=True, priority=3),
        Column("eta", "ETA", right=True, priority=2),
        Column("limit", "limit", right=True, priority=7),  # the stage's running/max_running over the fleet
        Column("ratelimit", "rate limit", right=True, priority=8),
    )

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.filter_text = ""
        self.sort_key: str | None = None
        self.sort_reverse = False
        self._rows: tuple[QueueRow, ...] = ()
        self._sessions: dict[str, str] = {}  # row key -> session name
        self._matched = 0

    # --- the poll thread's half ----------------------------------------------------------
    def view_settings(self) -> QueueView:
        return QueueView(self.filter_text, self.sort_key, self.sort_reverse)

    @classmethod
    def prepare(cls, source: MainSource, view: QueueView | None) -> QueueData:
        """Rows for every queue; cells for those ``view`` shows (the others are rendered on
        demand if a filter or sort brings them in)."""
        snapshot, flows = source.snapshot, source.flows
        view = view or QueueView()
        states = {s.name: s.state for s in snapshot.sessions}
        rows = []
        for q in snapshot.queues:
            flow = flows.get(q.name)
            rows.append(QueueRow(q, flow, states.get(q.session, "?"),
                                 {k: sort.value(q, flow) for k, sort in SORTS.items()}))
        shown = {r.key for r in select(rows, view)[0]}
        return QueueData(tuple(QueueRow(r.q, r.flow, r.state, r.sort, queue_cells(r.q, r.flow, r.state))
                               if r.key in shown else r for r in rows))

    # --- the operator's view -----------------------------------------------------------
    def title_suffix(self) -> str:
        parts = []
        if self.sort_key:
            sort = SORTS[self.sort_key]
            descending = sort.descending != self.sort_reverse
            parts.append(f"sorted by {sort.label} {'↓' if descending else '↑'}")
        if self.filter_text:
            parts.append(f"filter “{self.filter_text}” ({self._matched} match)")
        if self._matched > len(self._sessions):
            parts.append(f"showing the first {len(self._sessions)} of {self._matched}: / filters, s sorts")
        return " · ".join(parts)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.redraw()

    def sort_by(self, key: str | None, *, toggle: bool = False) -> None:
        if toggle and key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False
        self.redraw()

    def cycle_sort(self) -> None:
        index = SORT_CYCLE.index(self.sort_key) if self.sort_key in SORT_CYCLE else 0
        self.sort_by(SORT_CYCLE[(index + 1) % len(SORT_CYCLE)])

    def selected_session(self) -> str | None:
        key = self.cursor_key()
        return self._sessions.get(key) if key else None

    def on_data_table_header_selected(self, event: TablePanel.HeaderSelected) -> None:
        key = HEADER_SORTS.get(event.column_key.value, event.column_key.value)
        if key in SORTS:
            event.stop()
            self.sort_by(key, toggle=True)

    # --- the UI thread's half ------------------------------------------------------------
    def _view(self) -> TableData:
        """The rows the filter lets through, in order."""
        rows, self._matched = select(self._rows, self.view_settings())
        self._sessions = {r.key: r.session for r in rows}
        return TableData.of(self.COLUMNS, ((r.key, r.rendered()) for r in rows))

    async def draw(self, data: QueueData) -> None:  # type: ignore[override]
        """Draw a poll's rows (a little at a time for huge tables)."""
        self._rows = data.rows
        await self._show()

    def redraw(self) -> None:
        """After a filter or sort change: the same rows, seen differently."""
        self.run_worker(self._show(), group="queues-redraw", exclusive=True, exit_on_error=False)

    async def _show(self) -> None:
        self._prepared = self._view()
        await self.show_rows(self._prepared.rows)
        self.set_title()
