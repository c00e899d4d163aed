"""Queues: one row per ``role:session`` with counts, throughput over the last minute and ETA.

:meth:`QueuesPanel.build` (pure, run in the poll thread) turns a snapshot into rows with their
sort values, and renders the cells of the rows the current view will show; the panel itself
only filters, orders and diffs them into its table. The table holds at most ``MAX_ROWS`` rows
(the first ones in the current order; the title says how many match), so drawing costs the
same with 10 queues or 10,000: filter (``/``) or sort (``s``) to see the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from rich.text import Text

from symphony.engine import QueueStatus, SessionState, Snapshot

from .. import fmt
from ..history import QueueFlow
from .base import TablePanel, right


MAX_ROWS = 500


@dataclass(eq=False)
class QueueRow:
    q: QueueStatus
    flow: QueueFlow | None
    state: str  # the session's
    sort: dict[str, Any] = field(repr=False)

    @property
    def key(self) -> str:  # role:session
        return self.q.name

    @property
    def session(self) -> str:
        return self.q.session

    @property
    def pool(self) -> str:
        return self.q.pool or ""

    @cached_property
    def cells(self) -> tuple:
        return QueuesPanel.cells(self.q, self.flow, self.state)


def select(rows: list[QueueRow], needle: str, sort_key: str | None, reverse: bool,
           limit: int = MAX_ROWS) -> tuple[list[QueueRow], int]:
    """The rows a view shows, in order (at most ``limit``), and how many matched the filter."""
    needle = needle.lower()
    if needle:
        rows = [r for r in rows if needle in r.key.lower() or needle in r.pool.lower()]
    if sort_key:
        sort = SORTS[sort_key]
        rows = sorted(rows, key=lambda r: r.sort[sort_key], reverse=sort.descending != reverse)
    return rows[:limit], len(rows)


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


class QueuesPanel(TablePanel):
    TITLE = "Queues"
    COLUMNS = (
        ("queue", "queue (role:session)", False),
        ("pool", "pool", False),
        ("queued", "queued", True),
        ("retry", "retrying", True),
        ("in_flight", "in flight", True),
        ("done", "done", True),
        ("failed", "failed", True),
        ("rate", "last min", True),
        ("eta", "ETA", True),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.filter_text = ""
        self.sort_key: str | None = None
        self.sort_reverse = False
        self._rows: list[QueueRow] = []
        self._sessions: dict[str, str] = {}  # row key -> session name
        self._matched = 0

    # --- the poll thread's half ----------------------------------------------------------
    def build(self, snapshot: Snapshot, flows: dict[str, QueueFlow]) -> list[QueueRow]:
        """Rows for every queue; cells for those the current view shows (the others are rendered
        on demand if a filter or sort brings them in). Reads only plain attributes of the panel."""
        states = {s.name: s.state for s in snapshot.sessions}
        rows = []
        for q in snapshot.queues:
            flow = flows.get(q.name)
            rows.append(QueueRow(q, flow, states.get(q.session, "?"),
                                 {k: sort.value(q, flow) for k, sort in SORTS.items()}))
        for row in select(rows, self.filter_text, self.sort_key, self.sort_reverse)[0]:
            row.cells  # noqa: B018 - rendered here, in the poll thread
        return rows

    @staticmethod
    def cells(q: QueueStatus, flow: QueueFlow | None, state: str) -> tuple:
        name = Text(q.name)
        if state != SessionState.ACTIVE:
            name.stylize("dim")
            name.append(f" ({state})", style="italic")
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
            name,
            q.pool or fmt.DASH,
            right(fmt.count(q.queued)),
            right(fmt.count(q.delayed) if q.delayed else fmt.DASH, "yellow" if q.delayed else "dim"),
            right(fmt.count(q.in_flight), "bold cyan" if q.in_flight else ""),
            right(fmt.count(q.completed), "green" if q.completed else ""),
            right(failed_text, "bold red" if failed else "dim"),
            right(rate),
            right(eta, "green" if finished else ""),
        )

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

    def on_data_table_header_selected(self, event) -> None:
        key = HEADER_SORTS.get(event.column_key.value, event.column_key.value)
        if key in SORTS:
            event.stop()
            self.sort_by(key, toggle=True)

    # --- the UI thread's half ------------------------------------------------------------
    def view(self) -> tuple[list[tuple[str, tuple]], list[str]]:
        """The rows the filter lets through, and their order."""
        rows, self._matched = select(self._rows, self.filter_text, self.sort_key, self.sort_reverse)
        self._sessions = {r.key: r.session for r in rows}
        return [(r.key, r.cells) for r in rows], [r.key for r in rows]

    async def show(self, rows: list[QueueRow]) -> None:
        """Draw a poll's rows (a little at a time for huge tables)."""
        self._rows = rows
        await self.sync_async(*self.view())
        self.set_title()

    def redraw(self) -> None:
        """After a filter or sort change: the same rows, seen differently."""
        self.run_worker(self._redraw(), group="queues-redraw", exclusive=True, exit_on_error=False)

    async def _redraw(self) -> None:
        await self.sync_async(*self.view())
        self.set_title()

    def update_data(self, snapshot: Snapshot, flows: dict[str, QueueFlow]) -> None:
        """Build and draw in one go (small tables, tests)."""
        self._rows = self.build(snapshot, flows)
        self.sync(*self.view())
        self.set_title()
