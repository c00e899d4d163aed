"""Workers: who is doing what, for how long, and whether they are still alive. Enter on a row
opens the worker's detail."""
from __future__ import annotations

from rich.text import Text

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
MAX_ROWS = 500  # the first ones: the dead and stale, then by pool, host and id


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

    @classmethod
    def prepare(cls, source: MainSource, view: object = None) -> TableData:
        snapshot = source.snapshot
        # trouble first (it stays put: dead and stale are not states that flicker), then stable
        workers = sorted(snapshot.workers, key=lambda w: (w.state not in ("dead", "stale"), w.pool, w.host, w.id))
        counts: dict[str, int] = {}
        for w in workers:
            counts[w.state] = counts.get(w.state, 0) + 1
        parts = [f"{len(workers)} registered"] + [f"{n} {s}" for s, n in sorted(counts.items(),
                                                                               key=lambda i: STATE_ORDER.get(i[0], 9))]
        if len(workers) > MAX_ROWS:
            parts.append(f"showing the first {MAX_ROWS}")
        rows = [(w.id, worker_cells(w)) for w in workers[:MAX_ROWS]]
        hint = "Enter: the selected worker's detail" if workers else ""
        return TableData.of(cls.COLUMNS, rows, ", ".join(parts), hint)
