"""Activity: recent completions, failures and session events, newest first, as a live tail (the
newest entry always shows, however many events there are)."""
from __future__ import annotations

from rich.text import Text

from symphony.engine import Event, OutcomeKind

from .. import fmt
from ..sources import MainSource
from .base import Clip, Column, TableData, TablePanel, left, right

KIND_STYLE = {
    "completed": ("✓ done", "green"),
    "failed": ("✗ failed", "bold red"),
    "timed_out": ("✗ timed out", "bold red"),
    "cancelled": ("⊘ cancelled", "yellow"),
    "worker_lost": ("⚠ lost worker", "bold yellow"),
    "reclaimed": ("↺ reclaimed", "yellow"),
    "cancel": ("⊘ cancel", "yellow"),
    "repair": ("↻ repair", "cyan"),
    "retry": ("↻ retry", "cyan"),
    "purge": ("⌫ purge", "yellow"),
    "session": ("● session", "cyan"),
}
LIMIT = 50
FAILURES = (OutcomeKind.FAILED, OutcomeKind.TIMED_OUT)


def event_id(e: Event) -> tuple[int, ...]:
    return tuple(int(p) for p in e.id.split("-") if p.isdigit())


def newest_first(events: tuple[Event, ...] | list[Event], limit: int = LIMIT) -> list[Event]:
    return sorted(events, key=event_id, reverse=True)[:limit]


def task_name(e: Event) -> str:
    if e.stage or e.item:
        return f"{e.stage}:{e.item}@{e.session}" if e.item else f"{e.stage}@{e.session}"
    return e.session or fmt.DASH


def event_detail(e: Event, *, worker: bool = True) -> str:
    detail = e.message or ""
    if not detail and e.duration_ms is not None:
        detail = f"in {e.duration_ms / 1000:.2f}s"
    if e.attempts and e.attempts > 1:
        detail = f"{detail} (attempt {e.attempts})".strip()
    if worker and e.worker:
        detail = f"{detail} · {e.worker}" if detail else e.worker
    return detail.replace("\n", " ")[:200]


def kind_cell(e: Event) -> Text:
    label, style = KIND_STYLE.get(e.kind, (e.kind, "cyan"))
    return left(label, style)


def activity_cells(e: Event, now: float) -> tuple:
    return (
        right(fmt.age(now - e.time)),
        kind_cell(e),
        Clip(Text(task_name(e), no_wrap=True)),
        Clip(Text(event_detail(e), style="red" if e.kind in FAILURES else "", no_wrap=True)),
    )


class ActivityPanel(TablePanel[MainSource]):
    TITLE = "Activity"
    CURSOR = "none"
    TAIL = True  # newest first, and the view stays on the newest
    COLUMNS = (
        Column("age", "ago", right=True),
        Column("kind", "event"),
        Column("task", "task", flex=True, min_width=12),
        Column("detail", "detail", flex=True, min_width=10, priority=1),
    )

    @classmethod
    def prepare(cls, source: MainSource, view: object = None) -> TableData:
        snapshot = source.snapshot
        events = newest_first(snapshot.events)
        return TableData.of(cls.COLUMNS, [(e.id, activity_cells(e, snapshot.taken_at)) for e in events])
