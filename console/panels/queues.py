"""Queues: one row per ``role:session`` with counts, throughput over the last minute and ETA."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.text import Text

from engine import QueueStatus, Snapshot

from .. import fmt
from ..history import QueueFlow
from .base import TablePanel, right


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
        self._sessions: dict[str, str] = {}  # row key -> session name
        self._last: tuple[Snapshot, dict[str, QueueFlow]] | None = None

    # --- the operator's view -----------------------------------------------------------
    def title_suffix(self) -> str:
        parts = []
        if self.sort_key:
            sort = SORTS[self.sort_key]
            descending = sort.descending != self.sort_reverse
            parts.append(f"sorted by {sort.label} {'↓' if descending else '↑'}")
        if self.filter_text:
            parts.append(f"filter “{self.filter_text}” ({len(self._cells)} shown)")
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

    def select_session(self, session: str) -> None:
        for key, name in self._sessions.items():
            if name == session and key in self._cells:
                self.table.move_cursor(row=self.table.get_row_index(key))
                return

    def on_data_table_header_selected(self, event) -> None:
        key = event.column_key.value
        if key == "retry":
            key = "queued"
        if key == "pool":
            key = "queue"
        if key in SORTS:
            event.stop()
            self.sort_by(key, toggle=True)

    # --- drawing -------------------------------------------------------------------------
    def update_data(self, snapshot: Snapshot, flows: dict[str, QueueFlow]) -> None:
        self._last = (snapshot, flows)
        self.redraw()

    def redraw(self) -> None:
        if self._last is None:
            self.set_title()
            return
        snapshot, flows = self._last
        states = {s.name: s.state for s in snapshot.sessions}
        needle = self.filter_text.lower()
        queues = [q for q in snapshot.queues
                  if not needle or needle in q.name.lower() or needle in (q.pool or "").lower()]
        self._sessions = {q.name: q.session for q in queues}
        rows = [(q.name, self.cells(q, flows.get(q.name), states.get(q.session, "?"))) for q in queues]
        order = [q.name for q in queues]
        if self.sort_key:
            sort = SORTS[self.sort_key]
            descending = sort.descending != self.sort_reverse
            order = [q.name for q in sorted(queues, key=lambda q: sort.value(q, flows.get(q.name)),
                                            reverse=descending)]
        self.sync(rows, order)
        self.set_title()

    @staticmethod
    def cells(q: QueueStatus, flow: QueueFlow | None, state: str) -> tuple:
        name = Text(q.name)
        if state != "active":
            name.stylize("dim")
            name.append(f" ({state})", style="italic")
        failed = q.failed + q.timed_out
        failed_text = str(failed) + (f" ({q.timed_out} t/o)" if q.timed_out else "")
        if flow is None or state == "cancelled":
            rate, eta = fmt.DASH, fmt.DASH
        else:
            rate = fmt.rate(flow.per_minute)
            eta = "done" if flow.done else fmt.duration(flow.eta_s)
        return (
            name,
            q.pool or fmt.DASH,
            right(fmt.count(q.queued)),
            right(fmt.count(q.delayed) if q.delayed else fmt.DASH, "yellow" if q.delayed else "dim"),
            right(fmt.count(q.in_flight), "bold cyan" if q.in_flight else ""),
            right(fmt.count(q.completed), "green" if q.completed else ""),
            right(failed_text, "bold red" if failed else "dim"),
            right(rate),
            right(eta, "green" if eta == "done" else ""),
        )
