"""The worker detail screen's panels: the worker's recent tasks (outcome, duration, attempts,
from the results stream) and its host's CPU and memory history. Prepared in the worker screen's
poll thread from a :class:`WorkerSource`."""
from __future__ import annotations

from rich.text import Text

from .. import fmt
from ..sources import WorkerSource
from .activity import FAILURES, kind_cell, task_name
from .base import Clip, Column, TableData, TablePanel, left, right
from .scalesets import Spark, level_style

HOST_WINDOW_S = 3600.0


class WorkerTasksPanel(TablePanel[WorkerSource]):
    TITLE = "Recent tasks"
    CURSOR = "none"
    TAIL = True
    COLUMNS = (
        Column("age", "when", right=True),
        Column("outcome", "outcome"),
        Column("task", "task", flex=True, min_width=12),
        Column("duration", "took", right=True),
        Column("attempts", "try", right=True, priority=2),
        Column("detail", "detail", flex=True, min_width=10, priority=1),
    )

    @classmethod
    def prepare(cls, source: WorkerSource, view: object = None) -> TableData:
        rows = []
        for e in source.tasks:
            took = fmt.DASH if e.duration_ms is None else f"{e.duration_ms / 1000:.2f}s"
            rows.append((e.id, (
                right(fmt.age(source.now - e.time) + " ago"), kind_cell(e), Clip(Text(task_name(e), no_wrap=True)),
                right(took), right(e.attempts or fmt.DASH),
                Clip(Text((e.message or "").replace("\n", " ")[:160], no_wrap=True,
                          style="red" if e.kind in FAILURES else "")),
            )))
        kinds: dict[str, int] = {}
        for e in source.tasks:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        title = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(kinds.items())) or "none in the results stream"
        return TableData.of(cls.COLUMNS, rows, title)


class HostPanel(TablePanel[WorkerSource]):
    TITLE = "Host"
    CURSOR = "none"
    COLUMNS = (
        Column("what", "host"),
        Column("now", "now", right=True),
        Column("history", "last hour", flex=True, min_width=8),
    )

    @classmethod
    def prepare(cls, source: WorkerSource, view: object = None) -> TableData:
        w, host, now = source.worker, source.host, source.now
        cpu = host.current if host is not None else (w.host_cpu_percent if w else None)
        memory = host.memory if host is not None else (w.host_memory_percent if w else None)
        points = tuple(host.points) if host is not None else ()
        start = max(now - HOST_WINDOW_S, min((p[0] for p in points), default=now - 60.0))
        name = host.host if host is not None else (w.host if w else fmt.DASH)
        cpus = host.cpus if host is not None and host.cpus else (w.cpus if w else None)
        rows = [
            ("cpu", (left(f"CPU{f' ({cpus} cores)' if cpus else ''}"), right(fmt.percent(cpu), level_style(cpu)),
                     Spark(points, start, now, level_style(cpu), natural_width=60))),
            ("mem", (left("memory"), right(fmt.percent(memory), level_style(memory)),
                     left("only the latest sample is kept", "dim"))),
        ]
        if w is not None:
            rows.append(("proc", (left("this process"), right(fmt.percent(w.cpu_percent)),
                                  left(f"memory {fmt.size(w.rss_bytes)} ({fmt.percent(w.memory_percent)})"))))
        return TableData.of(cls.COLUMNS, rows, f"{name} · last {fmt.duration(now - start)}")
