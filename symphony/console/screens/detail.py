"""Enter on a session: per-stage progress, failures with their error and stderr tail, and the
last job's key/values. Refreshed by its own poller (fetch in a thread, next poll armed after
the draw), so it never blocks the keys either."""
from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from symphony.engine import describe_error, is_unavailable, redact

from .. import fmt
from ..panels.base import TablePanel, right
from ..poller import Poller

BAR_WIDTH = 20


def bar(done: int, total: int, width: int = BAR_WIDTH) -> Text:
    fraction = (done / total) if total else 0.0
    filled = int(round(fraction * width))
    text = Text("█" * filled, style="green")
    text.append("░" * (width - filled), style="dim")
    text.append(f" {fraction * 100:3.0f}%")
    return text


class StagesPanel(TablePanel):
    TITLE = "Stages"
    CURSOR = "none"
    COLUMNS = (
        ("stage", "stage", False),
        ("pool", "pool", False),
        ("progress", "progress (done / items)", False),
        ("done", "done", True),
        ("queued", "queued", True),
        ("retry", "retrying", True),
        ("in_flight", "in flight", True),
        ("failed", "failed", True),
        ("timed_out", "timed out", True),
        ("cancelled", "cancelled", True),
        ("reclaimed", "reclaimed", True),
    )

    def update_data(self, detail: Any) -> None:
        items = detail.status.items
        rows = []
        for q in detail.queues:
            rows.append((q.role, (
                q.role, q.pool or fmt.DASH, bar(q.completed, items), right(f"{q.completed}/{items}"),
                right(q.queued), right(q.delayed or fmt.DASH), right(q.in_flight),
                right(q.failed, "bold red" if q.failed else "dim"), right(q.timed_out, "bold red" if q.timed_out else "dim"),
                right(q.cancelled, "yellow" if q.cancelled else "dim"), right(q.reclaimed or fmt.DASH),
            )))
        self.sync(rows)


class FailuresPanel(TablePanel):
    TITLE = "Failures"
    COLUMNS = (
        ("item", "item", False),
        ("stage", "stage", False),
        ("state", "state", False),
        ("attempts", "attempts", True),
        ("when", "when", True),
        ("error", "error", False),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.failures: dict[str, Any] = {}
        self._count = 0

    def title_suffix(self) -> str:
        return f"{self._count} (↑↓ selects one: its stderr tail is below)" if self._count else "none"

    def update_data(self, failures: tuple[Any, ...], now: float) -> None:
        self.failures = {f"{f.stage}:{f.item}": f for f in failures}
        self._count = len(failures)
        rows = []
        for key, f in self.failures.items():
            at = getattr(f, "at", None)
            rows.append((key, (
                f.item, f.stage, Text(str(f.state).replace("_", " "), style="bold red"), right(f.attempts or fmt.DASH),
                right(fmt.age(now - at) + " ago" if at else fmt.DASH),
                Text(redact(f.error or "").replace("\n", " ")[:160], style="red"),
            )))
        self.sync(rows)
        self.set_title()

    def selected(self) -> Any:
        key = self.cursor_key()
        return self.failures.get(key) if key else None


class LastJobPanel(TablePanel):
    TITLE = "Last job"
    CURSOR = "none"
    COLUMNS = (("key", "key", False), ("value", "value", False))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.job_id: str | None = None

    def title_suffix(self) -> str:
        return self.job_id or "none yet"

    def update_data(self, job_id: str | None, values: dict[str, str]) -> None:
        self.job_id = job_id
        self.sync([(k, (k, redact(v))) for k, v in sorted(values.items())])
        self.set_title()


class DetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", show=True),
    ]

    def __init__(self, session: str, backend: Any, *, refresh: float = 1.0):
        super().__init__()
        self.session = session
        self.backend = backend
        self.refresh_s = refresh
        self.detail: Any = None
        self.data_at: float | None = None
        self.error = ""
        self.poller: Poller | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="detail"):
            yield Static(id="detail-head")
            yield StagesPanel(id="stages")
            with Horizontal(id="detail-bottom"):
                with Vertical(id="failures-box"):
                    yield FailuresPanel(id="failures")
                    yield Static(id="stderr", markup=False)
                yield LastJobPanel(id="lastjob")
        yield Footer()

    def on_mount(self) -> None:
        self.poller = Poller(self, lambda: self.backend.detail(self.session), self.draw, self.failed,
                             interval=self.refresh_s, name="detail-poll")
        self.poller.start()
        self.set_interval(0.5, self.show_head)
        self.show_head()
        self.query_one("#failures-table", DataTable).focus()
        self.show_stderr()

    def on_screen_suspend(self) -> None:
        if self.poller:
            self.poller.stop()

    def on_screen_resume(self) -> None:
        if self.poller and not self.poller.running:
            self.poller.start()

    def clock(self) -> float:
        clock = getattr(self.app, "clock", None)
        return clock() if clock is not None else time.monotonic()

    def draw(self, detail: Any) -> None:
        self.detail = detail
        self.data_at = self.clock()
        self.error = ""
        self.query_one(StagesPanel).update_data(detail)
        snapshot = getattr(self.app, "snapshot", None)  # failure times are server times
        now = snapshot.taken_at if snapshot is not None else time.time()
        self.query_one(FailuresPanel).update_data(tuple(detail.failures), now)
        self.query_one(LastJobPanel).update_data(detail.last_job_id, dict(detail.last_job or {}))
        for panel in self.query(TablePanel):
            panel.set_stale(False)
        self.show_head()
        self.show_stderr()

    def failed(self, exc: BaseException) -> None:
        reason = "Redis unreachable, reconnecting" if is_unavailable(exc) else "error"
        self.error = f"{reason}: {describe_error(exc)}"
        for panel in self.query(TablePanel):
            panel.set_stale(True)
        self.show_head()

    def show_head(self) -> None:
        head = Text()
        head.append(f" Session {self.session} ", style="bold reverse")
        d = self.detail
        if d is not None:
            s = d.status
            head.append(f"  {s.state} · pipeline {s.pipeline} · {fmt.count(s.items)} items · "
                        f"{fmt.count(s.completed)} through every stage · {s.failed + s.timed_out} failed  ")
            head.append_text(bar(s.completed, s.items, 30))
            if s.file:
                head.append(f"\n file {s.file}", style="dim")
        if self.data_at is not None:
            age = max(0.0, self.clock() - self.data_at)
            head.append(f"   data {fmt.age(age)} old", style="yellow" if self.error else "dim")
        if self.error:
            head.append(f"\n stale · {redact(self.error)}", style="bold yellow")
        elif d is None:
            head.append("   loading…", style="dim")
        self.query_one("#detail-head", Static).update(head)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "failures-table":
            self.show_stderr()

    def show_stderr(self) -> None:
        failure = self.query_one(FailuresPanel).selected()
        box = self.query_one("#stderr", Static)
        if failure is None:
            box.update(Text("stderr tail: select a failure", style="dim"))
            box.border_title = "stderr tail"
            return
        box.border_title = f"stderr tail · {failure.stage}:{failure.item}"
        tail = redact(failure.stderr or "").rstrip("\n").splitlines()[-12:]
        text = Text()
        text.append(redact(failure.error or ""), style="bold red")
        text.append("\n" + ("\n".join(tail) if tail else "(no stderr)"), style="" if tail else "dim")
        box.update(text)

    def action_back(self) -> None:
        self.app.pop_screen()
