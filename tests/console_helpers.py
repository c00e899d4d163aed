"""Helpers for the console tests: waiting inside a running app (poll with a deadline, never a
bare sleep), and an app that records its notifications."""
from __future__ import annotations

from typing import Any, Callable

from symphony.console.app import SymphonyApp
from tests.helpers import Poll


async def until(pilot, predicate: Callable[[], Any], timeout: float = 20.0, message: str = "condition") -> Any:
    """Let the app run until ``predicate()`` is truthy; fail the test at the deadline."""
    notes = getattr(pilot.app, "notes", None)
    poll = Poll(predicate, timeout, message, detail=lambda: f"; notifications: {notes}" if notes else "")
    while not poll.ready():
        await pilot.pause(0.02)
    return poll.value


class RecordingApp(SymphonyApp):
    """The console, remembering every notification it showed (for assertions)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []

    def notify(self, message, *args, **kwargs):
        self.notes.append(str(message))
        return super().notify(message, *args, **kwargs)

    def noted(self, text: str) -> str | None:
        return next((n for n in self.notes if text in n), None)


def text_of(widget) -> str:
    """The plain text a Static shows."""
    return str(widget.content)


def cells(table) -> list[list[str]]:
    """A DataTable's rows, in display order, as plain strings."""
    return [[str(c) for c in table.get_row(row.key)] for row in table.ordered_rows]
