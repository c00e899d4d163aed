"""Workers: who is doing what, for how long, and whether they are still alive."""
from __future__ import annotations

from rich.text import Text

from symphony.engine import Snapshot, WorkerStatus

from .. import fmt
from .base import TablePanel, right

STATE_STYLE = {
    "busy": "bold green",
    "idle": "",
    "stopping": "yellow",
    "stale": "bold yellow",
    "dead": "bold white on red",
}
# Words, not only colours: the state column says what is wrong.
STATE_WORDS = {
    "stale": "STALE (late beat)",
    "dead": "DEAD (lease lapsed)",
}
STATE_ORDER = {"dead": 0, "stale": 1, "stopping": 2, "busy": 3, "idle": 4}
MAX_ROWS = 500  # the first ones: the dead and stale, then by pool, host and id


class WorkersPanel(TablePanel):
    TITLE = "Workers"
    COLUMNS = (
        ("worker", "worker", False),
        ("host", "host", False),
        ("pool", "pool", False),
        ("pid", "pid", True),
        ("state", "state", False),
        ("task", "current task", False),
        ("for", "for", True),
        ("beat", "last beat", True),
        ("cpu", "CPU", True),
        ("mem", "memory", True),
        ("done", "done", True),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._summary = ""

    def title_suffix(self) -> str:
        return self._summary

    @classmethod
    def build(cls, snapshot: Snapshot) -> tuple[list[tuple[str, tuple]], str]:
        """Rows and the title's summary (pure: run in the poll thread)."""
        # trouble first (it stays put: dead and stale are not states that flicker), then stable
        workers = sorted(snapshot.workers, key=lambda w: (w.state not in ("dead", "stale"), w.pool, w.host, w.id))
        counts: dict[str, int] = {}
        for w in workers:
            counts[w.state] = counts.get(w.state, 0) + 1
        parts = [f"{len(workers)} registered"] + [f"{n} {s}" for s, n in sorted(counts.items(),
                                                                               key=lambda i: STATE_ORDER.get(i[0], 9))]
        if len(workers) > MAX_ROWS:
            parts.append(f"showing the first {MAX_ROWS}")
        return [(w.id, cls.cells(w)) for w in workers[:MAX_ROWS]], ", ".join(parts)

    async def show(self, built: tuple[list[tuple[str, tuple]], str]) -> None:
        rows, self._summary = built
        await self.sync_async(rows)
        self.set_title()

    def update_data(self, snapshot: Snapshot) -> None:
        rows, self._summary = self.build(snapshot)
        self.sync(rows)
        self.set_title()

    @staticmethod
    def cells(w: WorkerStatus) -> tuple:
        style = STATE_STYLE.get(w.state, "")
        state = Text(STATE_WORDS.get(w.state, w.state), style=style)
        late = w.state in ("stale", "dead")
        beat = right(fmt.age(w.heartbeat_age_s) + " ago" if w.heartbeat_age_s is not None else fmt.DASH,
                     "bold red" if w.state == "dead" else ("bold yellow" if late else ""))
        memory = fmt.percent(w.memory_percent)
        if w.rss_bytes:
            memory = f"{fmt.size(w.rss_bytes)} {memory}"
        cpu = fmt.percent(w.cpu_percent)
        if w.host_cpu_percent is not None:
            cpu = f"{cpu} (host {fmt.percent(w.host_cpu_percent)})"
        return (
            Text(w.id, style="dim" if w.state == "dead" else ""),
            w.host,
            w.pool or fmt.DASH,
            right(w.pid or fmt.DASH),
            state,
            w.current or Text(fmt.DASH, style="dim"),
            right(fmt.age(w.current_age_s) if w.current else fmt.DASH),
            beat,
            right(cpu),
            right(memory),
            right(fmt.count(w.completed)),
        )
