"""``symphony-tui``: the operations console (a Textual app over the engine's snapshots).

The app never talks to Redis on the UI thread: polls go through :class:`console.poller.Poller`
and every action through :meth:`SymphonyApp.run_io`, both of which run the blocking call in a
thread. So keys always answer at once, even while Redis is slow or gone.

The main screen's panels follow the panel protocol (``panels/base.py``): the poll thread reads
the backend and prepares every panel's data, the UI thread diffs it into the widgets, and the
next poll is armed only when the last one was drawn. Its layout fits the terminal: every panel
sizes to its content; from 160 columns the scale sets sit beside the queues (a second panel,
shown instead of the one beside the activity); each table shows the columns that fit, by
priority, and on a short terminal the panels keep a few rows each.
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
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input

from symphony.engine import RedisUnavailable, Snapshot, SymphonyError, describe_error, is_unavailable, redact

from .actions import SessionActions
from .backend import Backend, PollResult
from .history import QueueRates
from .panels import ActivityPanel, HeaderBar, QueuesPanel, ScaleSetsPanel, SessionsPanel, WorkersPanel
from .panels.base import Board, Frame
from .poller import Poller
from .screens import DetailScreen, HelpScreen, InitializeScreen, WorkerScreen
from .sources import MainSource

log = logging.getLogger("symphony.console")

# Actions that only make sense on the main screen or the detail screen (not in dialogs).
SESSION_ACTIONS = {"repair", "cancel_session", "pause_session", "retry_failed", "export"}
MAIN_ACTIONS = {"initialize", "filter", "sort", "detail"}
LIVE_DEADLINE_S = 90.0  # --screenshot of the demo: how long to wait for a worker and a completion (tui_main's)


@dataclass(frozen=True)
class Prepared:
    """One poll of the main screen, ready to draw: what the backend read, and every panel's data
    (prepared in the poll thread)."""

    result: PollResult
    frame: Frame[MainSource]


class FilterInput(Input):
    BINDINGS = [Binding("escape", "clear", "Clear the filter", show=False)]

    def action_clear(self) -> None:
        self.value = ""
        self.app.close_filter()


class SymphonyApp(SessionActions, App[None]):
    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "Symphony"
    SUB_TITLE = "operations console"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide"), (160, "-huge")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding("r", "repair", "Repair"),
        Binding("i", "initialize", "Init"),
        Binding("e", "export", "Export"),
        Binding("c", "cancel_session", "Cancel"),
        Binding("p", "pause_session", "Pause"),
        Binding("f", "retry_failed", "Retry"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("question_mark", "help", "Help"),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False),
    ]

    def __init__(self, backend: Backend, *, refresh: float = 1.0, export_dir: str | Path = ".",
                 clock: Callable[[], float] = time.monotonic, note: str = "", handle_signals: bool = False,
                 screenshot: tuple[str, float] | None = None, screenshot_live: bool = False):
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
        self.screenshot_live = screenshot_live  # wait for a worker and a completion first
        self._screenshot_deadline = 0.0
        self.screenshot_saved: str | None = None
        self._notes: deque[tuple[str, str]] = deque(maxlen=20)  # from other threads (the Azure collector)

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(self.backend.display, note=self.note, id="header")
        with VerticalScroll(id="main", can_focus=False):
            yield FilterInput(placeholder="filter queues by name or pool · Enter keeps it · Escape clears it",
                              id="filter")
            yield SessionsPanel(id="sessions")
            with Horizontal(id="middle"):
                yield QueuesPanel(id="queues")
                yield ScaleSetsPanel(id="scalesets-side")  # shown beside the queues from 160 columns
            yield WorkersPanel(id="workers")
            with Horizontal(id="bottom"):
                yield ScaleSetsPanel(id="scalesets")
                yield ActivityPanel(id="activity")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#filter", FilterInput).display = False
        main = self.main_screen
        self.board: Board[MainSource] = Board([main.query_one(SessionsPanel), main.query_one(QueuesPanel),
                                               main.query_one(WorkersPanel), *main.query(ScaleSetsPanel),
                                               main.query_one(ActivityPanel)])
        self.header.stale_after = max(5.0, 3 * self.refresh_s)
        self.poller = Poller(self, self.fetch, self.draw, self.poll_failed, interval=self.refresh_s,
                             view=self.board.views, active=self.main_shown)
        self.poller.start()
        self.set_interval(0.5, self.tick, name="header-tick")
        self.query_one(QueuesPanel).focus()
        self.tick()
        if self.screenshot:
            self._screenshot_deadline = self.clock() + self.screenshot[1] + LIVE_DEADLINE_S
            self.set_timer(self.screenshot[1], self._take_screenshot)
        if self.handle_signals and os.name == "posix":
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.exit)

    def live(self) -> bool:
        """The data shows a live pipeline: a worker, and a completion."""
        snapshot = self.snapshot
        return (snapshot is not None and bool(snapshot.workers)
                and any(q.completed for q in snapshot.queues) and self.connected)

    def _take_screenshot(self) -> None:
        """Save the main screen once there is data (with ``live``: a worker and a completion),
        or give up at the deadline; then quit."""
        ready = self.live() if self.screenshot_live else (self.snapshot is not None)
        if not ready and self.clock() < self._screenshot_deadline:
            self.set_timer(0.5, self._take_screenshot)
            return
        if ready:
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

    def main_shown(self) -> bool:
        """The main screen's panels are on screen (a dialog over them leaves them shown; the
        session or worker detail, or the initialize screen, covers them: their poll waits)."""
        return not isinstance(self.screen, (DetailScreen, WorkerScreen, InitializeScreen))

    def tick(self) -> None:
        if not self.screen_stack or not self.is_running:
            return
        if self.poller is not None and self.poller.skipped and self.main_shown():
            self.poller.poll_now()  # back on the main screen: fresh data at once
        if getattr(self, "board", None) is not None and self.main_shown() and self.board.pending_shown():
            self.run_worker(self.board.draw_pending(), group="draw-pending", exclusive=True, exit_on_error=False)
        while self._notes:
            level, message = self._notes.popleft()
            severity = "error" if level in ("error", "critical") else "warning" if level == "warning" else "information"
            self.notify(redact(message), title="Azure Monitor", severity=severity, timeout=8)
        self.header.show(self.clock())

    def post_note(self, level: str, message: str) -> None:
        """Thread-safe: queue a notification (drawn by the next tick, never blocking the caller)."""
        self._notes.append((level, message))

    # --- the poll ----------------------------------------------------------------------------
    def fetch(self, views: dict[str, Any]) -> Prepared:
        """The poll's thread half: read Redis, then prepare every panel's data (no widget here)."""
        result = self.backend.poll(page=views.get("workers"))
        snapshot = result.snapshot
        self.rates.update(snapshot)  # only ever used by this thread (one poll at a time)
        source = MainSource(snapshot, tuple(result.scale_sets), self.rates.flows(snapshot))
        return Prepared(result, self.board.prepare(source, views))

    async def draw(self, prepared: Prepared) -> None:
        """The UI half: diff the prepared data into the panels (yielding as it goes)."""
        result = prepared.result
        snapshot = result.snapshot
        self.snapshot = snapshot
        self.scale_sets = tuple(result.scale_sets)
        await self.board.draw(prepared.frame)
        self.board.set_stale(False)
        header = self.header
        header.connection.state = "connected"
        header.connection.error = ""
        header.connection.retry_at = None
        header.connection.data_at = self.clock()
        header.connection.poll_s = result.duration_s
        server = snapshot.server
        header.connection.out_of_memory = server is not None and bool(server.out_of_memory)
        header.connection.problem = server.headline if server is not None else ""
        workers = snapshot.fleet.registered if snapshot.fleet is not None else len(snapshot.workers)
        header.counts = (f"{len(snapshot.sessions)} session(s) · {len(snapshot.queues)} queue(s) · "
                         f"{workers} worker(s)"
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
        self.board.set_stale(True)
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
        sessions = self.main_screen.query_one(SessionsPanel)
        if self.focused is sessions:
            return sessions.cursor_key()
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
        if isinstance(screen, WorkerScreen):
            return action not in SESSION_ACTIONS | MAIN_ACTIONS
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.allowed(action, self.screen)

    # --- actions (the session actions are in actions.py) -------------------------------------
    def action_detail(self) -> None:
        """Enter: the detail of the selected session, or of the selected worker."""
        if self.focused is self.main_screen.query_one(WorkersPanel):
            worker = self.main_screen.query_one(WorkersPanel).cursor_key()
            if worker is not None:
                self.push_screen(WorkerScreen(worker, self.backend, refresh=self.refresh_s, clock=self.clock))
                return
        session = self.selected_session()
        if session is None:
            self.notify("Select a session first (a row of the queues or sessions table)", severity="warning",
                        timeout=4)
            return
        self.push_screen(DetailScreen(session, self.backend, refresh=self.refresh_s, clock=self.clock))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id in ("queues", "sessions", "workers"):
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
        self.main_screen.query_one(QueuesPanel).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.queues.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.close_filter()

    def action_sort(self) -> None:
        self.queues.cycle_sort()

    def action_zoom(self) -> None:
        """The focused panel alone on the screen (again: back to every panel)."""
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None:
            screen.maximize(screen.focused)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # --- the command palette -----------------------------------------------------------------
    PALETTE = (
        ("Repair session", "Dry-run plan of a repair of the selected session, then run it (r)", "repair"),
        ("Initialize sessions", "Choose session files, verify, enqueue (i)", "initialize"),
        ("Export snapshot", "Write the status JSON (as symphony status --export) (e)", "export"),
        ("Cancel session", "Cancel the selected session, after confirming (c)", "cancel_session"),
        ("Pause or resume session", "Pause the selected session, or resume it if paused, after confirming (p)",
         "pause_session"),
        ("Retry failed tasks", "Queue the selected session's failed tasks again (f)", "retry_failed"),
        ("Detail", "The selected session's stages and failures, or the selected worker's tasks (Enter)", "detail"),
        ("Filter queues", "Show only the queues matching a text (/)", "filter"),
        ("Sort queues", "Cycle the queues' sort column (s)", "sort"),
        ("Keys", "Every key of the console (?)", "help"),
        ("Screenshot", "Save an SVG of this screen into the export folder and say where", "save_screenshot"),
    )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Ours, then Textual's own except those ours replace (one entry per title)."""
        titles = set()
        for title, help_text, action in self.PALETTE:
            if self.allowed(action, screen):
                titles.add(title)
                callback = getattr(self, f"action_{action}")
                if action == "save_screenshot":  # once the palette has closed: the screen, not the palette
                    callback = lambda: self.set_timer(0.2, self.action_save_screenshot)  # noqa: E731
                yield SystemCommand(title, help_text, callback)
        for command in super().get_system_commands(screen):
            if command.title not in titles and command.title not in ("Keys", "Screenshot"):
                yield command
