"""``r``: the dry-run plan of a repair, per stage; Enter runs it, Escape cancels."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from symphony.engine import describe_error

from .. import fmt


def reasons_text(reasons: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda r: -r[1])) or fmt.DASH


class RepairScreen(ModalScreen[Any]):
    """Dismissed with the plan to run, or None."""

    BINDINGS = [
        Binding("enter", "run", "Run the repair", show=True),
        Binding("f", "toggle_failed", "Include failed items", show=True),
        Binding("escape", "cancel", "Cancel", show=True),
    ]

    def __init__(self, plan: Any, replan: Callable[[bool], Any] | None = None, *, retry_failed: bool = False):
        super().__init__()
        self.plan = plan
        self.replan = replan
        self.retry_failed = retry_failed
        self.planning = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="repair-dialog"):
            yield Static(id="repair-title", classes="dialog-title")
            yield Static(id="repair-summary", classes="dialog-body")
            table = DataTable(cursor_type="none", show_cursor=False, id="repair-table")
            table.can_focus = False  # Enter belongs to the dialog: it runs the repair
            table.add_column("stage", key="stage")
            table.add_column(Text("would enqueue", justify="right"), key="count")
            table.add_column("why", key="why")
            yield table
            yield Static(id="repair-hint", classes="dialog-hint")

    def on_mount(self) -> None:
        self.show_plan()

    def show_plan(self) -> None:
        plan = self.plan
        self.query_one("#repair-title", Static).update(Text(f"Repair {plan.session} · dry run", style="bold"))
        summary = (f"{fmt.count(plan.total)} item(s): {fmt.count(plan.complete)} complete, "
                   f"{fmt.count(plan.in_progress)} in progress, {fmt.count(plan.failed)} failed "
                   + ("(included: they will be tried again)" if self.retry_failed else "(left alone)"))
        if plan.lost:
            summary += (f"; {fmt.count(plan.lost)} item(s) lost their task message (a queue or in-flight list "
                        "vanished): enqueued again")
        if plan.counters_off or plan.relisted:
            summary += "; Redis' counters and live entries are healed"
        self.query_one("#repair-summary", Static).update(summary)
        table = self.query_one("#repair-table", DataTable)
        table.clear()
        for stage in plan.stages:
            table.add_row(stage.stage, Text(fmt.count(stage.count), justify="right"),
                          _reasons(stage) if stage.count else Text("nothing missing", style="dim"), key=stage.stage)
        table.add_row(Text("total", style="bold"), Text(fmt.count(plan.to_enqueue), justify="right", style="bold"), "",
                      key="__total__")
        if not plan.to_enqueue and plan.needs_applying:
            hint = "Enter heals Redis' state (nothing to enqueue) · Escape cancels"
        elif plan.to_enqueue:
            hint = (f"Enter enqueues these {fmt.count(plan.to_enqueue)} task(s) · "
                    f"f {'leaves failed items alone' if self.retry_failed else 'includes failed items'} · Escape cancels")
        else:
            hint = ("Nothing to repair: every item is complete, in progress or failed. "
                    f"f {'leaves failed items alone' if self.retry_failed else 'includes failed items'} · "
                    "Enter or Escape closes")
        self.query_one("#repair-hint", Static).update(hint)

    def action_run(self) -> None:
        if self.planning:
            self.notify("Still planning: one moment", severity="warning", timeout=2)
            return
        self.dismiss(self.plan if self.plan.needs_applying else None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_toggle_failed(self) -> None:
        if self.replan is None or self.planning:
            return
        self.planning = True
        wanted = not self.retry_failed
        self.query_one("#repair-hint", Static).update("planning again…")
        self.run_worker(self._replan(wanted), exclusive=True, exit_on_error=False)

    async def _replan(self, retry_failed: bool) -> None:
        try:
            plan = await asyncio.to_thread(self.replan, retry_failed)
        except Exception as exc:  # noqa: BLE001
            self.notify(f"Could not plan the repair: {describe_error(exc)}", severity="error")
        else:
            self.plan, self.retry_failed = plan, retry_failed
        finally:
            self.planning = False
        self.show_plan()


def _reasons(stage: Any) -> str:
    return reasons_text(dict(getattr(stage, "reasons", {}) or {}))
