"""Activity: recent completions, failures and session events, newest first."""
from __future__ import annotations

from rich.text import Text

from symphony.engine import Event, OutcomeKind, Snapshot

from .. import fmt
from .base import TablePanel, right

KIND_STYLE = {
    "completed": ("✓ completed", "green"),
    "failed": ("✗ failed", "bold red"),
    "timed_out": ("✗ timed out", "bold red"),
    "cancelled": ("⊘ cancelled", "yellow"),
    "worker_lost": ("⚠ worker lost", "bold yellow"),
    "reclaimed": ("↺ reclaimed", "yellow"),
    "cancel": ("⊘ session cancelled", "yellow"),
    "repair": ("↻ repair", "cyan"),
    "retry": ("↻ retry", "cyan"),
    "purge": ("⌫ purge", "yellow"),
    "session": ("● session", "cyan"),
}

FAILURES = (OutcomeKind.FAILED, OutcomeKind.TIMED_OUT)


class ActivityPanel(TablePanel):
    TITLE = "Activity"
    CURSOR = "none"  # newest first: the view stays at the top as events arrive
    COLUMNS = (
        ("age", "when", True),
        ("kind", "event", False),
        ("task", "task", False),
        ("detail", "detail", False),
    )
    LIMIT = 50

    @classmethod
    def build(cls, snapshot: Snapshot) -> list[tuple[str, tuple]]:
        events = sorted(snapshot.events, key=lambda e: tuple(int(p) for p in e.id.split("-") if p.isdigit()),
                        reverse=True)[: cls.LIMIT]
        return [(e.id, cls.cells(e, snapshot.taken_at)) for e in events]

    async def show(self, rows: list[tuple[str, tuple]]) -> None:
        await self.sync_async(rows)

    def update_data(self, snapshot: Snapshot) -> None:
        self.sync(self.build(snapshot))

    @staticmethod
    def cells(e: Event, now: float) -> tuple:
        label, style = KIND_STYLE.get(e.kind, (e.kind, "cyan"))
        if e.stage or e.item:
            task = f"{e.stage}:{e.item}@{e.session}" if e.item else f"{e.stage}@{e.session}"
        else:
            task = e.session or fmt.DASH
        detail = e.message or ""
        if not detail and e.duration_ms is not None:
            detail = f"in {e.duration_ms / 1000:.2f}s"
        if e.attempts and e.attempts > 1:
            detail = f"{detail} (attempt {e.attempts})".strip()
        if e.worker:
            detail = f"{detail} · {e.worker}" if detail else e.worker
        return (
            right(fmt.age(now - e.time) + " ago"),
            Text(label, style=style),
            task,
            Text(detail.replace("\n", " ")[:200], style="red" if e.kind in FAILURES else ""),
        )
