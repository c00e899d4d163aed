"""The console's actions on a session (repair, cancel, retry failed), export, screenshots and
initialize: a mixin of :class:`~symphony.console.app.SymphonyApp`.

Every blocking call goes through ``run_io`` (a thread); every action that changes something
asks first (a dialog) and says what it did (a notification).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from symphony.engine import CANCEL_EFFECT, PAUSE_EFFECT, redact

from . import fmt
from .screens import ConfirmScreen, InitializeScreen, RepairScreen


def unused_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or ``stem-2``, ``stem-3``... when taken (two in one second: keep both)."""
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


class SessionActions:
    """Mixed into the app: uses its ``backend``, ``snapshot``, ``connected``, ``run_io``,
    ``notify``, ``push_screen`` and ``poll_now``."""

    def _when_confirmed(self, what: str, then: Any) -> Any:
        """A dialog's callback: ``then()`` if the operator said yes and Redis still answers."""

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            if not self.connected:
                self.notify_disconnected(what)
                return
            then()

        return confirmed

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

        def confirmed() -> None:
            self.run_io("cancel", self.backend.cancel, session, done=lambda result: (
                self.notify(f"Cancelled {result.session}: {result.cancelled} waiting task(s) cancelled"
                            + (f"; {result.in_flight} running task(s) are stopped and end as cancelled"
                               if result.in_flight else ""),
                            title="cancel", timeout=8),
                self.poll_now()))

        self.push_screen(ConfirmScreen(f"Cancel session {session}?", CANCEL_EFFECT,
                                       confirm="Yes, cancel the session", back="No, keep it running",
                                       danger=True), self._when_confirmed("cancel", confirmed))

    def action_pause_session(self) -> None:
        session = self._session_for("pause")
        if session is None:
            return
        status = next((s for s in self.snapshot.sessions if s.name == session), None) if self.snapshot else None
        paused = bool(status and status.paused)
        verb, call = ("resume", self.backend.resume) if paused else ("pause", self.backend.pause)

        def confirmed() -> None:
            self.run_io(verb, call, session, done=lambda result: (
                self.notify(f"{'Resumed' if paused else 'Paused'} {session}"
                            + ("" if paused else ": nothing more is claimed from it; running tasks finish"),
                            title=verb, timeout=8),
                self.poll_now()))

        if paused:
            screen = ConfirmScreen(f"Resume session {session}?", "Workers claim its tasks again, in their order.",
                                   confirm="Resume it", back="Keep it paused")
        else:
            screen = ConfirmScreen(f"Pause session {session}?", PAUSE_EFFECT, confirm="Pause it",
                                   back="Keep it running")
        self.push_screen(screen, self._when_confirmed(verb, confirmed))

    def action_retry_failed(self) -> None:
        session = self._session_for("retry")
        if session is None:
            return
        failed = 0
        if self.snapshot is not None:
            status = next((s for s in self.snapshot.sessions if s.name == session), None)
            failed = (status.failed + status.timed_out) if status else 0

        def confirmed() -> None:
            self.run_io("retry", self.backend.retry, session, done=lambda result: (
                self.notify(f"{result.session}: {result.requeued} failed task(s) queued again", title="retry",
                            timeout=8),
                self.poll_now()))

        self.push_screen(ConfirmScreen(f"Retry the failed tasks of {session}?",
                                       f"{failed} failed or timed-out task(s) go back to their queues with a fresh "
                                       "attempt count.", confirm="Retry them", back="Leave them"),
                         self._when_confirmed("retry", confirmed))

    def action_export(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            self.notify("Nothing to export yet: no snapshot has been read", severity="warning")
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(snapshot.taken_at))
        stale = not self.connected

        def write() -> str:
            return snapshot.write(unused_path(self.export_dir, f"symphony-status-{stamp}", ".json"))

        def done(written: str) -> None:
            self.exports.append(written)
            self.notify(redact(f"Snapshot exported to {written}"
                               + (" (stale: Redis is unreachable, this is the last data read)" if stale else "")),
                        title="export", timeout=10)

        self.run_io("export", write, done=done)

    def action_save_screenshot(self) -> None:
        """An SVG of the screen as it is, into the export folder (the palette's "Screenshot")."""
        svg = self.export_screenshot()  # now, on the UI thread: the screen the operator sees
        stamp = time.strftime("%Y%m%d-%H%M%S")

        def write() -> str:
            self.export_dir.mkdir(parents=True, exist_ok=True)
            path = unused_path(self.export_dir, f"symphony-screen-{stamp}", ".svg")
            path.write_text(svg, encoding="utf-8")
            return str(path.resolve())

        def done(written: str) -> None:
            self.exports.append(written)
            self.notify(redact(f"Screenshot saved to {written}"), title="screenshot", timeout=10)

        self.run_io("screenshot", write, done=done)

    def action_initialize(self) -> None:
        if not self.connected:
            self.notify_disconnected("initialize")
            return
        self.push_screen(InitializeScreen(self.backend))
