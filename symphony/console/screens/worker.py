"""Enter on a worker: its recent tasks with outcome and duration (from the results stream) and
its host's CPU and memory history, refreshed by the screen's own poller."""
from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Static

from .. import fmt
from ..panels.base import Panel
from ..panels.worker import HostPanel, WorkerTasksPanel
from ..panels.workers import STATE_STYLE, STATE_WORDS
from ..sources import WorkerSource
from ..panels.header import fitted
from .detail import PolledScreen


class WorkerScreen(PolledScreen):
    POLL_NAME = "worker-poll"

    def __init__(self, worker_id: str, backend: Any, *, refresh: float = 1.0,
                 clock: Callable[[], float] | None = None):
        super().__init__(refresh=refresh, clock=clock)
        self.worker_id = worker_id
        self.backend = backend

    def compose(self) -> ComposeResult:
        with Vertical(id="worker"):
            yield Static(id="worker-head")
            yield HostPanel(id="host")
            yield WorkerTasksPanel(id="tasks")
        yield Footer(compact=True, show_command_palette=False)

    def panels(self) -> list[Panel]:
        return [self.query_one(HostPanel), self.query_one(WorkerTasksPanel)]

    def read(self) -> WorkerSource:
        return self.backend.worker(self.worker_id)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(WorkerTasksPanel).focus()

    def show_head(self) -> None:
        box = self.query_one("#worker-head", Static)
        width = box.size.width or 10_000
        first: list[tuple[int, Text]] = [(0, Text(f" Worker {self.worker_id} ", style="bold reverse"))]
        second: list[tuple[int, Text]] = []
        source = self.source
        if isinstance(source, WorkerSource):
            w = source.worker
            if w is None:
                first.append((0, Text("  gone: no longer registered (its last tasks are below)", style="bold yellow")))
            else:
                first += [(0, Text("  " + STATE_WORDS.get(w.state, w.state), style=STATE_STYLE.get(w.state, ""))),
                          (0, Text(f" · {w.host}")), (2, Text(f" · pool {w.pool or fmt.DASH}")),
                          (4, Text(f" · pid {w.pid}")), (3, Text(f" · roles {', '.join(w.roles)}")),
                          (1, Text(f" · {fmt.count(w.completed)} done")),
                          (1, Text(f" · beat {fmt.age(w.heartbeat_age_s)} ago",
                                   style="bold red" if w.state == "dead" else ""))]
                if w.current:
                    second.append((0, Text(f" running {w.current} for {fmt.age(w.current_age_s)}")))
                else:
                    second.append((0, Text(" no task right now", style="dim")))
                if w.started:
                    second.append((2, Text(f" · up {fmt.age(source.now - w.started)}", style="dim")))
        second.append((1, self.age_text()))
        text = fitted(first, width)
        text.append("\n")
        text.append_text(fitted(second, width))
        box.update(text)
