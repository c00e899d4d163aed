"""The session detail screen's panels: per-stage progress, failures (with the stderr tail of the
selected one), and the last job's key/values. Same protocol as the main screen's panels: the
data is prepared in the detail screen's poll thread from a :class:`DetailSource`."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from symphony.engine import OutcomeRecord, redact

from .. import fmt
from ..sources import DetailSource
from .base import Clip, Column, TableData, TablePanel, left, right

BAR_WIDTH = 20


def progress_text(done: int, total: int, width: int = BAR_WIDTH) -> Text:
    text = Text(fmt.bar(done, total, width), style="green", no_wrap=True)
    filled = fmt.bar_cells(done, total, width)
    text.stylize("dim", filled)
    text.append(f" {fmt.fraction(done, total):>4}")
    return text


class StagesPanel(TablePanel[DetailSource]):
    TITLE = "Stages"
    CURSOR = "none"
    COLUMNS = (
        Column("stage", "stage"),
        Column("pool", "pool", priority=6),
        Column("progress", "progress (done / items)", priority=5),
        Column("done", "done", right=True),
        Column("queued", "queued", right=True),
        Column("retry", "retrying", right=True, priority=4),
        Column("in_flight", "in flight", right=True, priority=1),
        Column("failed", "failed", right=True),
        Column("timed_out", "timed out", right=True, priority=2),
        Column("cancelled", "cancelled", right=True, priority=3),
        Column("reclaimed", "reclaimed", right=True, priority=7),
    )

    @classmethod
    def prepare(cls, source: DetailSource, view: object = None) -> TableData:
        detail = source.detail
        items = detail.status.items
        rows = []
        for q in detail.queues:
            rows.append((q.role, (
                left(q.role), left(q.pool or fmt.DASH), progress_text(q.completed, items),
                right(f"{fmt.count(q.completed)}/{fmt.count(items)}"), right(fmt.count(q.queued)),
                right(q.delayed or fmt.DASH), right(q.in_flight),
                right(q.failed, "bold red" if q.failed else "dim"), right(q.timed_out, "bold red" if q.timed_out else "dim"),
                right(q.cancelled, "yellow" if q.cancelled else "dim"), right(q.reclaimed or fmt.DASH),
            )))
        return TableData.of(cls.COLUMNS, rows)


@dataclass(frozen=True)
class FailureData:
    table: TableData
    failures: tuple[tuple[str, OutcomeRecord], ...] = ()


class FailuresPanel(TablePanel[DetailSource]):
    TITLE = "Failures"
    COLUMNS = (
        Column("item", "item"),
        Column("stage", "stage"),
        Column("state", "state", priority=2),
        Column("attempts", "tries", right=True, priority=3),
        Column("when", "when", right=True, priority=1),
        Column("error", "error", flex=True, min_width=12),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.failures: dict[str, OutcomeRecord] = {}

    @classmethod
    def prepare(cls, source: DetailSource, view: object = None) -> FailureData:  # type: ignore[override]
        failures = tuple((f"{f.stage}:{f.item}", f) for f in source.detail.failures)
        rows = []
        for key, f in failures:
            rows.append((key, (
                left(f.item), left(f.stage), left(str(f.state).replace("_", " "), "bold red"),
                right(f.attempts or fmt.DASH),
                right(fmt.age(source.now - f.at) + " ago" if f.at else fmt.DASH),
                Clip(Text(redact(f.error or "").replace("\n", " ")[:160], style="red", no_wrap=True)),
            )))
        title = f"{len(failures)} (↑↓ selects one: its stderr tail is shown)" if failures else "none"
        return FailureData(TableData.of(cls.COLUMNS, rows, title), failures)

    async def draw(self, data: FailureData) -> None:  # type: ignore[override]
        self.failures = dict(data.failures)
        await super().draw(data.table)

    def selected(self) -> OutcomeRecord | None:
        key = self.cursor_key()
        return self.failures.get(key) if key else None


class LastJobPanel(TablePanel[DetailSource]):
    TITLE = "Last job"
    CURSOR = "none"
    COLUMNS = (Column("key", "key"), Column("value", "value", flex=True, min_width=8))

    @classmethod
    def prepare(cls, source: DetailSource, view: object = None) -> TableData:
        detail = source.detail
        values = dict(detail.last_job or {})
        rows = [(k, (left(k), Clip(Text(redact(v), no_wrap=True)))) for k, v in sorted(values.items())]
        return TableData.of(cls.COLUMNS, rows, detail.last_job_id or "none yet")


def stderr_text(failure: OutcomeRecord | None, lines: int = 12) -> Text:
    if failure is None:
        return Text("stderr tail: select a failure", style="dim")
    tail = redact(failure.stderr or "").rstrip("\n").splitlines()[-lines:]
    text = Text()
    text.append(redact(failure.error or ""), style="bold red")
    text.append("\n" + ("\n".join(tail) if tail else "(no stderr)"), style="" if tail else "dim")
    return text
