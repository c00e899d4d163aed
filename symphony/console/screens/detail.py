"""Enter on a session: per-stage progress, failures with their error and stderr tail, and the
last job's key/values. Refreshed by its own poller (view settings on the UI thread, fetch and
prepare in a thread, draw on the UI thread, next poll armed after the draw), so it never blocks
the keys either, and it reads nothing of another screen."""
from __future__ import annotations

import time
from typing import Any, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from symphony.engine import describe_error, is_unavailable, redact

from .. import fmt
from ..panels.base import Board, Frame, Panel
from ..panels.header import fitted
from ..panels.detail import FailuresPanel, LastJobPanel, StagesPanel, progress_text, stderr_text
from ..poller import Poller
from ..sources import DetailSource

BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]


class PolledScreen(Screen[None]):
    """A screen whose panels are polled together by a :class:`Board`: subclasses give ``panels()``
    and ``read()`` (blocking, run in the poll thread) and draw their head in ``show_head``."""

    BINDINGS = [Binding("escape,backspace", "back", "Back", show=True)]
    HORIZONTAL_BREAKPOINTS = BREAKPOINTS
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    POLL_NAME = "screen-poll"

    def __init__(self, *, refresh: float = 1.0, clock: Callable[[], float] | None = None):
        super().__init__()
        self.refresh_s = refresh
        self.clock = clock or time.monotonic
        self.data_at: float | None = None
        self.error = ""
        self.poller: Poller[Frame[Any]] | None = None
        self.board: Board[Any] | None = None
        self.source: Any = None  # the last source drawn

    def panels(self) -> list[Panel]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def read(self) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def show_head(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def on_mount(self) -> None:
        self.board = Board(self.panels())
        board = self.board
        self.poller = Poller(self, lambda views: board.prepare(self.read(), views), self.draw, self.failed,
                             interval=self.refresh_s, name=self.POLL_NAME, view=board.views)
        self.poller.start()
        self.set_interval(0.5, self.show_head)
        self.show_head()

    def on_screen_suspend(self) -> None:
        if self.poller:
            self.poller.stop()

    def on_screen_resume(self) -> None:
        if self.poller and not self.poller.running:
            self.poller.start()

    async def draw(self, frame: Frame[Any]) -> None:
        self.source = frame.source
        self.data_at = self.clock()
        self.error = ""
        await self.board.draw(frame)
        self.board.set_stale(False)
        self.show_head()

    def failed(self, exc: BaseException) -> None:
        reason = "Redis unreachable, reconnecting" if is_unavailable(exc) else "error"
        self.error = f"{reason}: {describe_error(exc)}"
        if self.board:
            self.board.set_stale(True)
        self.show_head()

    def age_text(self) -> Text:
        text = Text(no_wrap=True)
        if self.data_at is not None:
            age = max(0.0, self.clock() - self.data_at)
            text.append(f"   data {fmt.age(age)} old", style="yellow" if self.error else "dim")
        if self.error:
            text.append(f" · stale · {redact(self.error)}", style="bold yellow")
        elif self.source is None:
            text.append("   loading…", style="dim")
        return text

    def action_back(self) -> None:
        self.app.pop_screen()


class DetailScreen(PolledScreen):
    POLL_NAME = "detail-poll"

    def __init__(self, session: str, backend: Any, *, refresh: float = 1.0, clock: Callable[[], float] | None = None):
        super().__init__(refresh=refresh, clock=clock)
        self.session = session
        self.backend = backend

    @property
    def detail(self) -> Any:
        return self.source.detail if isinstance(self.source, DetailSource) else None

    def compose(self) -> ComposeResult:
        with Vertical(id="detail"):
            yield Static(id="detail-head")
            yield StagesPanel(id="stages")
            yield FailuresPanel(id="failures")
            with Horizontal(id="detail-bottom"):
                yield Static(id="stderr", markup=False)
                yield LastJobPanel(id="lastjob")
        yield Footer(compact=True, show_command_palette=False)

    def panels(self) -> list[Panel]:
        return [self.query_one(StagesPanel), self.query_one(FailuresPanel), self.query_one(LastJobPanel)]

    def read(self) -> DetailSource:
        return self.backend.detail(self.session)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(FailuresPanel).focus()
        self.show_stderr()

    async def draw(self, frame: Frame[Any]) -> None:
        await super().draw(frame)
        self.show_stderr()

    def show_head(self) -> None:
        head = self.query_one("#detail-head", Static)
        width = head.size.width or 10_000
        first: list[tuple[int, Text]] = [(0, Text(f" Session {self.session} ", style="bold reverse"))]
        second: list[tuple[int, Text]] = []
        d = self.detail
        if d is not None:
            s = d.status
            first += [(0, Text(f"  {s.state}", style="bold")), (3, Text(f" · pipeline {s.pipeline}")),
                      (0, Text(f" · {fmt.count(min(s.completed, s.items))}/{fmt.count(s.items)} items through "
                               "every stage")),
                      (1, Text(f" · {s.failed + s.timed_out} failed", style="bold red" if s.failed else ""))]
            second.append((0, Text(" ") + progress_text(s.completed, s.items, 20)))
            if s.file:
                second.append((2, Text(f"  file {s.file}", style="dim")))
        age = self.age_text()
        second.append((1, age))
        text = fitted(first, width)
        text.append("\n")
        text.append_text(fitted(second, width))
        head.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "failures":
            self.show_stderr()

    def show_stderr(self) -> None:
        failure = self.query_one(FailuresPanel).selected()
        box = self.query_one("#stderr", Static)
        box.border_title = f"stderr tail · {failure.stage}:{failure.item}" if failure else "stderr tail"
        box.update(stderr_text(failure))
