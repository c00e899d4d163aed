"""``symphony-tui``: the operations console (a Textual app over the engine's snapshots).

The app never talks to Redis on the UI thread: polls go through :class:`console.poller.Poller`
and every action through :meth:`SymphonyApp.run_io`, both of which run the blocking call in a
thread. So keys always answer at once, even while Redis is slow or gone.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input

from symphony.engine import (CANCEL_EFFECT, RedisUnavailable, Snapshot, SymphonyError, describe_error, is_unavailable,
                             redact)

from . import fmt
from .backend import Backend, PollResult
from .commands.status import export_snapshot
from .history import QueueRates
from .panels import ActivityPanel, HeaderBar, QueuesPanel, ScaleSetsPanel, WorkersPanel
from .panels.base import TablePanel
from .poller import Poller
from .screens import ConfirmScreen, DetailScreen, HelpScreen, InitializeScreen, RepairScreen

log = logging.getLogger("symphony.console")

# Actions that only make sense on the main screen or the detail screen (not in dialogs).
SESSION_ACTIONS = {"repair", "cancel_session", "retry_failed", "export"}
MAIN_ACTIONS = {"initialize", "filter", "sort", "detail"}


@dataclass(frozen=True)
class Prepared:
    """One poll, ready to draw: the result and every panel's rows, built in the poll thread."""

    result: PollResult
    queues: Any
    workers: Any
    activity: Any
    scale_sets: Any


class FilterInput(Input):
    BINDINGS = [Binding("escape", "clear", "Clear the filter", show=False)]

    def action_clear(self) -> None:
        self.value = ""
        self.app.close_filter()


class SymphonyApp(App[None]):
    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "Symphony"
    SUB_TITLE = "operations console"
    BINDINGS = [
        Binding("r", "repair", "Repair"),
        Binding("i", "initialize", "Initialize"),
        Binding("e", "export", "Export"),
        Binding("c", "cancel_session", "Cancel"),
        Binding("f", "retry_failed", "Retry failed"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False),
    ]

    def __init__(self, backend: Backend, *, refresh: float = 1.0, export_dir: str | Path = ".",
                 clock: Callable[[], float] = time.monotonic, note: str = "", handle_signals: bool = False,
                 screenshot: tuple[str, float] | None = None):
        super().__init__()
        self.backend = backend
        self.refresh_s = max(0.1, float(refresh))
        self.export_dir = Path(export_dir)
        self.clock = clock
        self.note = note
        self.handle_signals = handle_signals
        self.snapshot: Snapshot | None = None
        self.scale_sets: tuple[Any, ...] = ()
        self.connected = False  # the last poll succeeded
        self.rates = QueueRates()
        self.poller: Poller[PollResult] | None = None
        self.exports: list[str] = []
        self._lost = False  # Redis stopped answering (notified once, until it is back)
        self.screenshot = screenshot  # (file, after seconds): save the main screen, then quit
        self.screenshot_saved: str | None = None
        self._notes: deque[tuple[str, str]] = deque(maxlen=20)  # from other threads (the Azure collector)

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(self.backend.display, note=self.note, id="header")
        with Vertical(id="main"):
            yield FilterInput(placeholder="filter queues by name or pool · Enter keeps it · Escape clears it",
                              id="filter")
            yield QueuesPanel(id="queues")
            yield WorkersPanel(id="workers")
            with Horizontal(id="bottom"):
                yield ScaleSetsPanel(id="scalesets")
                yield ActivityPanel(id="activity")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", FilterInput).display = False
        self._queues_panel = self.query_one("#queues", QueuesPanel)
        self.header.stale_after = max(5.0, 3 * self.refresh_s)
        self.poller = Poller(self, self.fetch, self.draw, self.poll_failed, interval=self.refresh_s)
        self.poller.start()
        self.set_interval(0.5, self.tick, name="header-tick")
        self.query_one("#queues-table", DataTable).focus()
        self.tick()
        if self.screenshot:
            self.set_timer(self.screenshot[1], self._take_screenshot)
        if self.handle_signals and os.name == "posix":
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.exit)

    def _take_screenshot(self) -> None:
        if self.snapshot is None and self.poller is not None and self.poller.polls < 30:
            self.set_timer(0.5, self._take_screenshot)  # no data yet: give Redis a little longer
            return
        if self.snapshot is not None:
            target = Path(self.screenshot[0]).resolve()
            self.screenshot_saved = self.save_screenshot(target.name, str(target.parent))
        self.exit()

    @property
    def main_screen(self) -> Screen:
        """The main screen (the bottom of the stack), whichever screen is on top."""
        return self.screen_stack[0]

    @property
    def header(self) -> HeaderBar:
        return self.main_screen.query_one("#header", HeaderBar)

    @property
    def queues(self) -> QueuesPanel:
        return self.main_screen.query_one("#queues", QueuesPanel)

    def tick(self) -> None:
        if not self.screen_stack or not self.is_running:
            return
        while self._notes:
            level, message = self._notes.popleft()
            severity = "error" if level in ("error", "critical") else "warning" if level == "warning" else "information"
            self.notify(redact(message), title="Azure Monitor", severity=severity, timeout=8)
        self.header.show(self.clock())

    def post_note(self, level: str, message: str) -> None:
        """Thread-safe: queue a notification (drawn by the next tick, never blocking the caller)."""
        self._notes.append((level, message))

    # --- the poll ----------------------------------------------------------------------------
    def fetch(self) -> Prepared:
        """The poll's thread half: read Redis, then build every row (nothing here touches a widget)."""
        result = self.backend.poll()
        snapshot = result.snapshot
        self.rates.update(snapshot)  # only ever used by this thread (one poll at a time)
        flows = self.rates.flows(snapshot)
        # the panel was looked up on the UI thread; build() only reads its filter and sort settings
        return Prepared(result, self._queues_panel.build(snapshot, flows), WorkersPanel.build(snapshot),
                        ActivityPanel.build(snapshot), ScaleSetsPanel.build(result.scale_sets, snapshot.taken_at))

    async def draw(self, prepared: Prepared) -> None:
        """The UI half: diff the prepared rows into the tables (yielding as it goes)."""
        result = prepared.result
        snapshot = result.snapshot
        self.snapshot = snapshot
        self.scale_sets = tuple(result.scale_sets)
        main = self.main_screen
        await main.query_one(QueuesPanel).show(prepared.queues)
        await main.query_one(WorkersPanel).show(prepared.workers)
        await main.query_one(ActivityPanel).show(prepared.activity)
        await main.query_one(ScaleSetsPanel).show(prepared.scale_sets)
        for panel in main.query(TablePanel):
            panel.set_stale(False)
        header = self.header
        header.connection.state = "connected"
        header.connection.error = ""
        header.connection.retry_at = None
        header.connection.data_at = self.clock()
        header.connection.poll_s = result.duration_s
        header.counts = (f"{len(snapshot.sessions)} session(s) · {len(snapshot.queues)} queue(s) · "
                         f"{len(snapshot.workers)} worker(s)"
                         + (f" · grace window {snapshot.grace_s:.0f}s" if snapshot.grace_s else ""))
        self.connected = True
        if self._lost:
            self.notify("Redis answers again: the data is live and actions are enabled", title="reconnected",
                        timeout=4)
        self._lost = False
        for line in result.reclaimed:
            self.notify(redact(line), title="reclaimed", severity="warning", timeout=6)
        self.tick()

    def poll_failed(self, exc: BaseException) -> None:
        unavailable = is_unavailable(exc) or isinstance(exc, RedisUnavailable)
        header = self.header
        header.connection.state = "reconnecting" if unavailable else "error"
        header.connection.error = describe_error(exc)
        header.connection.retry_at = self.clock() + self.poller.next_delay if self.poller else None
        if not self._lost:
            log.warning("poll failed: %s", describe_error(exc))
            if unavailable:
                self.notify("Redis is unreachable: showing the last data (stale) and reconnecting",
                            title="reconnecting", severity="warning", timeout=6)
            else:
                self.notify(f"Reading the status failed: {describe_error(exc)}", severity="error", timeout=8)
        self.connected = False
        self._lost = True
        main = self.main_screen
        for panel in main.query(TablePanel):
            panel.set_stale(True)
        self.tick()

    def poll_now(self) -> None:
        if self.poller:
            self.poller.poll_now()

    # --- running blocking calls off the UI thread -------------------------------------------
    def notify_disconnected(self, what: str) -> None:
        self.notify(f"Redis is unreachable (reconnecting): {what} is disabled until it answers",
                    title="disabled", severity="warning", timeout=4)

    def run_io(self, what: str, call: Callable[..., Any], *args: Any, done: Callable[[Any], None],
               **kwargs: Any) -> None:
        """Run ``call`` in a thread; on success ``done(result)`` on the UI thread; errors become
        notifications (never a crash, never a password)."""

        async def job() -> None:
            try:
                result = await asyncio.to_thread(call, *args, **kwargs)
            except SymphonyError as exc:
                self.notify(f"{what}: {redact(exc)}", severity="error", timeout=8)
            except Exception as exc:  # noqa: BLE001
                if is_unavailable(exc):
                    self.notify(f"{what} failed: Redis is unreachable ({describe_error(exc)})", severity="error",
                                timeout=8)
                else:
                    log.exception("%s failed", what)
                    self.notify(f"{what} failed: {describe_error(exc)}", severity="error", timeout=8)
            else:
                done(result)

        self.run_worker(job(), group="actions", exit_on_error=False, name=what)

    # --- which session ----------------------------------------------------------------------
    def selected_session(self) -> str | None:
        if isinstance(self.screen, DetailScreen):
            return self.screen.session
        return self.queues.selected_session()

    def _session_for(self, what: str) -> str | None:
        if not self.connected:
            self.notify_disconnected(what)
            return None
        session = self.selected_session()
        if session is None:
            self.notify(f"{what}: select a session first (a row of the queues table)", severity="warning",
                        timeout=4)
        return session

    @staticmethod
    def allowed(action: str, screen: Screen) -> bool:
        """Which actions make sense on ``screen`` (dialogs take their own keys)."""
        if isinstance(screen, ModalScreen):
            return action not in SESSION_ACTIONS | MAIN_ACTIONS | {"help"}
        if isinstance(screen, InitializeScreen):
            return action not in SESSION_ACTIONS | MAIN_ACTIONS
        if isinstance(screen, DetailScreen):
            return action not in MAIN_ACTIONS
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.allowed(action, self.screen)

    # --- actions -----------------------------------------------------------------------------
    def action_repair(self) -> None:
        session = self._session_for("repair")
        if session is None:
            return
        self.notify(f"Planning the repair of {session} (dry run)…", timeout=2)

        def show(plan: Any) -> None:
            replan = lambda retry_failed: self.backend.plan_repair(session, retry_failed=retry_failed)  # noqa: E731
            self.push_screen(RepairScreen(plan, replan), self._run_repair)

        self.run_io("repair", self.backend.plan_repair, session, done=show)

    def _run_repair(self, plan: Any) -> None:
        if plan is None:
            return
        if not self.connected:
            self.notify_disconnected("repair")
            return

        def done(result: Any) -> None:
            enqueued = dict(result.enqueued)
            total = sum(enqueued.values())
            detail = fmt.join_counts(enqueued.items())
            self.notify(f"Repair of {result.session}: {total} task(s) enqueued ({detail})"
                        + (f"; {result.skipped} already queued or in flight" if result.skipped else ""),
                        title="repair", timeout=8)
            self.poll_now()

        self.run_io("repair", self.backend.repair, plan, done=done)

    def action_cancel_session(self) -> None:
        session = self._session_for("cancel")
        if session is None:
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            if not self.connected:
                self.notify_disconnected("cancel")
                return
            self.run_io("cancel", self.backend.cancel, session, done=lambda result: (
                self.notify(f"Cancelled {result.session}: {result.cancelled} waiting task(s) cancelled"
                            + (f"; {result.in_flight} running task(s) end as cancelled" if result.in_flight else ""),
                            title="cancel", timeout=8),
                self.poll_now()))

        self.push_screen(ConfirmScreen(f"Cancel session {session}?", CANCEL_EFFECT,
                                       confirm="Cancel the session", danger=True), confirmed)

    def action_retry_failed(self) -> None:
        session = self._session_for("retry")
        if session is None:
            return
        failed = 0
        if self.snapshot is not None:
            status = next((s for s in self.snapshot.sessions if s.name == session), None)
            failed = (status.failed + status.timed_out) if status else 0

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            if not self.connected:
                self.notify_disconnected("retry")
                return
            self.run_io("retry", self.backend.retry, session, done=lambda result: (
                self.notify(f"{result.session}: {result.requeued} failed task(s) queued again", title="retry",
                            timeout=8),
                self.poll_now()))

        self.push_screen(ConfirmScreen(f"Retry the failed tasks of {session}?",
                                       f"{failed} failed or timed-out task(s) go back to their queues with a fresh "
                                       "attempt count.", confirm="Retry"), confirmed)

    def action_export(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            self.notify("Nothing to export yet: no snapshot has been read", severity="warning")
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(snapshot.taken_at))
        stale = not self.connected

        def write() -> str:
            path, n = self.export_dir / f"symphony-status-{stamp}.json", 1
            while path.exists():  # two exports in one second: keep both
                n += 1
                path = self.export_dir / f"symphony-status-{stamp}-{n}.json"
            return export_snapshot(snapshot, str(path))

        def done(written: str) -> None:
            self.exports.append(written)
            self.notify(redact(f"Snapshot exported to {written}"
                               + (" (stale: Redis is unreachable, this is the last data read)" if stale else "")),
                        title="export", timeout=10)

        self.run_io("export", write, done=done)

    def action_initialize(self) -> None:
        if not self.connected:
            self.notify_disconnected("initialize")
            return
        self.push_screen(InitializeScreen(self.backend))

    def action_detail(self) -> None:
        session = self.selected_session()
        if session is None:
            self.notify("Select a session first (a row of the queues table)", severity="warning", timeout=4)
            return
        self.push_screen(DetailScreen(session, self.backend, refresh=self.refresh_s))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "queues-table":
            event.stop()
            self.action_detail()

    def action_filter(self) -> None:
        box = self.main_screen.query_one("#filter", FilterInput)
        box.display = True
        box.focus()

    def close_filter(self) -> None:
        box = self.main_screen.query_one("#filter", FilterInput)
        if not box.value:
            box.display = False
        self.main_screen.query_one("#queues-table", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.queues.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.close_filter()

    def action_sort(self) -> None:
        self.queues.cycle_sort()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # --- the command palette -----------------------------------------------------------------
    PALETTE = (
        ("Repair session", "Dry-run plan of a repair of the selected session, then run it (r)", "repair"),
        ("Initialize sessions", "Choose session files from tasks/, verify, enqueue (i)", "initialize"),
        ("Export snapshot", "Write the status JSON (as symphony status --export) (e)", "export"),
        ("Cancel session", "Cancel the selected session, after confirming (c)", "cancel_session"),
        ("Retry failed tasks", "Queue the selected session's failed tasks again (f)", "retry_failed"),
        ("Session detail", "Per-stage progress, failures and the last job (Enter)", "detail"),
        ("Filter queues", "Show only the queues matching a text (/)", "filter"),
        ("Sort queues", "Cycle the queues' sort column (s)", "sort"),
        ("Keys", "Every key of the console (?)", "help"),
    )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for title, help_text, action in self.PALETTE:
            if self.allowed(action, screen):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
        yield from super().get_system_commands(screen)
