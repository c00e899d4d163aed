"""Helpers for the console tests: waiting inside a running app (poll with a deadline, never a
bare sleep), and an app that records its notifications."""
from __future__ import annotations

import time
from typing import Any, Callable

from console.app import SymphonyApp


async def until(pilot, predicate: Callable[[], Any], timeout: float = 20.0, message: str = "condition") -> Any:
    """Let the app run until ``predicate()`` is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - e.g. a widget not mounted yet
            last_exc = exc
        await pilot.pause(0.02)
    notes = getattr(pilot.app, "notes", None)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}"
                         + (f" (last error: {last_exc!r})" if last_exc else "")
                         + (f"; notifications: {notes}" if notes else ""))


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
