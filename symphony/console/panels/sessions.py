"""Sessions: one line per session (a progress bar across its stages, done/items, throughput,
ETA, state) and the totals of every session under the title."""
from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

from symphony.engine import SessionState, SessionStatus, Snapshot

from .. import fmt
from ..sources import MainSource
from .base import Column, TableData, TablePanel, left, right

STATE_STYLE = {SessionState.ACTIVE: "bold green", SessionState.COMPLETE: "bold cyan", SessionState.CANCELLED: "yellow"}
SEGMENT = 8  # natural width of one stage's part of the bar
MAX_ROWS = 500


@dataclass(frozen=True)
class StageBar:
    """One bar across a session's stages: a segment per stage, filled by that stage's done/items,
    drawn at the width its column gets."""

    stages: tuple[tuple[str, int], ...]  # (stage, done) in pipeline order
    items: int

    @property
    def natural_width(self) -> int:
        return max(1, len(self.stages) * (SEGMENT + 1) - 1)

    def __str__(self) -> str:
        return self.render(self.natural_width).plain

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(self.natural_width, 2 * len(self.stages)), self.natural_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.render(max(1, options.max_width))

    def render(self, width: int) -> Text:
        n = max(1, len(self.stages))
        gap = 1 if width >= 3 * n else 0
        segment = max(1, (width - gap * (n - 1)) // n)
        text = Text(no_wrap=True)
        for i, (_, done) in enumerate(self.stages):
            if i and gap:
                text.append(" ")
            filled = fmt.bar_cells(done, self.items, segment)
            text.append(fmt.FULL * filled, style="green" if done >= self.items else "cyan")
            text.append(fmt.EMPTY * (segment - filled), style="dim")
        return text


def session_cells(s: SessionStatus, done: dict[tuple[str, str], int], source: MainSource) -> tuple:
    done_by_stage = tuple((stage, done.get((stage, s.name), 0)) for stage in s.stages)
    flow = source.flows.get(f"{s.stages[-1]}:{s.name}") if s.stages else None
    failed = s.failed + s.timed_out
    cancelled = s.state == SessionState.CANCELLED
    finished = s.state != SessionState.ACTIVE or (s.items and s.completed >= s.items)
    rate = fmt.DASH if flow is None or cancelled else fmt.rate(flow.per_minute)
    full = source.snapshot.server is not None and bool(source.snapshot.server.out_of_memory)
    if finished or flow is None:
        eta = fmt.DASH if cancelled else ("done" if finished else fmt.DASH)
    elif full:  # nothing can be claimed or finished: no time is a fair estimate
        eta = "stalled"
    else:
        eta = fmt.duration(flow.eta_s)
    return (
        left(s.name, "" if s.state == SessionState.ACTIVE else "dim"),
        StageBar(done_by_stage, s.items),
        right(f"{fmt.count(min(s.completed, s.items))}/{fmt.count(s.items)}"),
        right(fmt.fraction(s.completed, s.items)),
        right(str(failed), "bold red" if failed else "dim"),
        right(rate),
        right(eta, "green" if finished and not cancelled else ""),
        right(str(s.priority) if s.priority else fmt.DASH, "bold" if s.priority else "dim"),
        _state_cell(s),
    )


def _state_cell(s: SessionStatus):
    """The state, and paused (all of it, or which stages) while it is active."""
    if s.state == SessionState.ACTIVE and s.paused:
        return left("paused", "bold yellow")
    if s.state == SessionState.ACTIVE and s.paused_stages:
        return left("paused: " + ",".join(s.paused_stages), "yellow")
    return left(str(s.state), STATE_STYLE.get(s.state, ""))


def totals(snapshot: Snapshot) -> str:
    sessions = snapshot.sessions
    items = sum(s.items for s in sessions)
    done = sum(min(s.completed, s.items) for s in sessions)
    failed = sum(s.failed + s.timed_out for s in sessions)
    queued = sum(q.queued + q.delayed for q in snapshot.queues)
    running = sum(q.in_flight for q in snapshot.queues)
    fleet = snapshot.fleet
    if fleet is not None:  # every registered worker (a paged snapshot holds one page of them)
        alive, registered = fleet.alive, fleet.registered
    else:
        alive = sum(1 for w in snapshot.workers if w.state not in ("dead", "stale"))
        registered = len(snapshot.workers)
    return (f"all: {fmt.count(done)}/{fmt.count(items)} done · {fmt.count(queued)} queued · "
            f"{fmt.count(running)} running · {fmt.count(failed)} failed · {alive}/{registered} workers up")


class SessionsPanel(TablePanel[MainSource]):
    TITLE = "Sessions"
    COLUMNS = (
        Column("session", "session"),
        Column("progress", "progress by stage", flex=True, min_width=8),
        Column("done", "done/items", right=True),
        Column("pct", "%", right=True, priority=3),
        Column("failed", "failed", right=True, priority=4),
        Column("rate", "rate", right=True, priority=2),
        Column("eta", "ETA", right=True, priority=1),
        Column("prio", "prio", right=True, priority=5),
        Column("state", "state"),
    )

    @classmethod
    def prepare(cls, source: MainSource, view: object = None) -> TableData:
        snapshot = source.snapshot
        states: dict[str, int] = {}
        for s in snapshot.sessions:
            states[s.state] = states.get(s.state, 0) + 1
        parts = [", ".join(f"{n} {state}" for state, n in sorted(states.items()))]
        # the active ones first (then by name), at most MAX_ROWS: drawing costs the same at any count
        shown = sorted(snapshot.sessions, key=lambda s: (s.state != SessionState.ACTIVE, s.name))[:MAX_ROWS]
        if len(snapshot.sessions) > MAX_ROWS:
            parts.append(f"showing the first {MAX_ROWS} (active first)")
        done = {(q.role, q.session): q.completed for q in snapshot.queues}
        rows = [(s.name, session_cells(s, done, source)) for s in shown]
        return TableData.of(cls.COLUMNS, rows, " · ".join(p for p in parts if p),
                            totals(snapshot) if snapshot.sessions else "")
