"""``?``: every key the console answers to."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

# (keys, what). tests/test_console_app.py checks that every binding of the app is here.
KEYS: tuple[tuple[str, str], ...] = (
    ("r", "repair the selected session: dry-run plan first, Enter runs it, Escape cancels"),
    ("i", "initialize sessions: choose files from tasks/, verify, confirm, progress"),
    ("e", "export a status snapshot (the JSON of symphony status --export)"),
    ("c", "cancel the selected session (asks first)"),
    ("p", "pause the selected session: no new claims, running tasks finish; on a paused one: resume (asks first)"),
    ("f", "retry the selected session's failed tasks (asks first)"),
    ("Enter", "on a queue or a session: its detail (per-stage progress, failures, last job); on a worker: its "
              "recent tasks and its host's CPU"),
    ("/", "filter the queues by name or pool (Enter keeps the filter, Escape clears it)"),
    ("s", "sort the queues: cycle the column (or click a column header; again to reverse)"),
    ("Tab / Shift+Tab", "move between the sessions, queues, workers, scale sets and activity tables"),
    ("z", "zoom: the focused panel alone on the screen (again: every panel)"),
    ("] / [", "on the workers: the next / previous page (the panel reads only the rows it shows)"),
    ("↑ ↓ PgUp PgDn", "move the selection"),
    ("Escape", "go back (close a dialog or the detail screen)"),
    ("Ctrl+P", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit (with --demo: stops the demo's Redis and workers)"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog"):
            yield Static("Keys", classes="dialog-title")
            table = DataTable(cursor_type="none", id="help-table", show_cursor=False)
            table.add_column("key", key="key")
            table.add_column("what it does", key="what")
            for keys, what in KEYS:
                table.add_row(keys, what)
            yield table
            yield Static("Actions that need Redis are disabled, with a notification, while it is unreachable. "
                         "Escape closes this help.", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
