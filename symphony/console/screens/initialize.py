"""``i``: choose session files from tasks/, see the verification report, confirm, watch progress."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Checkbox, Footer, ProgressBar, SelectionList, Static

from symphony.engine import describe_error, is_unavailable, redact

from .confirm import ConfirmScreen


class InitializeScreen(Screen[None]):
    BINDINGS = [
        Binding("v", "verify", "Verify & initialize", show=True),
        Binding("a", "toggle_all", "All / none", show=True),
        Binding("escape", "back", "Back", show=True),
    ]

    def __init__(self, backend: Any):
        super().__init__()
        self.backend = backend
        self.report: Any = None
        self.results: list[Any] = []
        self.running = False
        self.total = 0
        self._done = 0
        self._lock = threading.Lock()

    def compose(self) -> ComposeResult:
        tasks = self.backend.tasks_dir.resolve()
        files = self.backend.session_files()
        with Vertical(id="init"):
            yield Static(Text.assemble((" Initialize sessions ", "bold reverse"), f"  from {tasks}"), id="init-head")
            with Horizontal(id="init-body"):
                with Vertical(id="init-left"):
                    yield SelectionList[str](*[(p.name, str(p), True) for p in files], id="init-files")
                    yield Checkbox("resume: enqueue only what is missing (registered or cancelled sessions)",
                                   id="init-resume")
                with VerticalScroll(id="init-right"):
                    yield Static(id="init-report")
            yield ProgressBar(total=None, show_eta=False, id="init-progress")
            yield Static(id="init-status")
        yield Footer()

    def on_mount(self) -> None:
        files = self.query_one("#init-files", SelectionList)
        files.border_title = "session files (Space toggles)"
        self.query_one("#init-right").border_title = "verification report"
        if not files.option_count:
            self.set_status(f"No session files (*.yaml) in {self.backend.tasks_dir.resolve()}.", "bold red")
        else:
            self.set_status("Space selects files · v verifies them (nothing is enqueued before you confirm) · "
                            "Escape goes back")
        self.query_one("#init-report", Static).update(Text("Not verified yet.", style="dim"))
        self.query_one("#init-progress", ProgressBar).display = False  # shown while enqueueing
        files.focus()
        self.set_interval(0.1, self.show_progress)

    def set_status(self, text: str, style: str = "") -> None:
        self.query_one("#init-status", Static).update(Text(redact(text), style=style))

    # --- verify ----------------------------------------------------------------------------
    def action_toggle_all(self) -> None:
        files = self.query_one("#init-files", SelectionList)
        if len(files.selected) == files.option_count:
            files.deselect_all()
        else:
            files.select_all()

    def action_verify(self) -> None:
        if self.running:
            self.notify("Initialization is running", severity="warning")
            return
        paths = list(self.query_one("#init-files", SelectionList).selected)
        if not paths:
            self.notify("Select at least one session file (Space; a selects all)", severity="warning")
            return
        if not getattr(self.app, "connected", True):
            self.app.notify_disconnected("initialize")
            return
        resume = self.query_one("#init-resume", Checkbox).value
        self.set_status(f"Verifying {len(paths)} file(s)…")
        self.run_worker(self._verify(paths, resume), group="verify", exclusive=True, exit_on_error=False)

    async def _verify(self, paths: list[str], resume: bool) -> None:
        try:
            report = await asyncio.to_thread(self.backend.verify, paths, resume=resume)
        except Exception as exc:  # noqa: BLE001
            self.set_status(f"Verification failed: {describe_error(exc)}", "bold red")
            return
        self.report = report
        self.show_report(report)
        if not report.ok or not report.specs:
            self.set_status(f"{len(report.problems)} problem(s): fix the files and verify again; nothing was enqueued.",
                            "bold red")
            return
        items = sum(len(spec.items) for spec in report.specs)
        names = "\n".join(f"  {spec.name}: {len(spec.items)} item(s), pipeline {spec.pipeline.name}"
                          for spec in report.specs)
        self.set_status("Verified. Confirm to enqueue.")
        self.app.push_screen(
            ConfirmScreen(f"Initialize {len(report.specs)} session(s)?",
                          f"{names}\n\n{items} item(s) will be enqueued for their first stage "
                          "(items already queued or in flight are skipped).", confirm="Initialize"),
            lambda yes: self._start(report, resume) if yes else self.set_status("Not initialized (cancelled)."))

    def show_report(self, report: Any) -> None:
        text = Text()
        text.append(f"{len(report.files)} file(s) checked\n\n", style="bold")
        for spec in report.specs:
            stages = " → ".join(spec.pipeline.stage_names)
            text.append("✓ ", style="bold green")
            text.append(spec.name, style="bold")
            text.append(f"  {len(spec.items)} item(s) · pipeline {spec.pipeline.name} ({stages})\n")
            text.append(f"    {spec.file}\n", style="dim")
        for title, problems, mark, style in (("problem(s)", report.problems, "✗ ", "bold red"),
                                             ("warning(s)", getattr(report, "warnings", ()), "! ", "bold yellow")):
            if not problems:
                continue
            text.append(f"\n{len(problems)} {title}:\n", style=style)
            for problem in problems:
                where = problem.file if problem.line is None else f"{problem.file}:{problem.line}"
                text.append(mark, style=style)
                text.append(where, style="bold")
                if problem.field:
                    text.append(f" [{problem.field}]", style="yellow")
                text.append(f" {redact(problem.message)}\n")
        self.query_one("#init-report", Static).update(text)

    # --- initialize ------------------------------------------------------------------------
    def _start(self, report: Any, resume: bool) -> None:
        if not getattr(self.app, "connected", True):
            self.app.notify_disconnected("initialize")
            return
        self.running = True
        self.results = []
        self.total = sum(len(spec.items) for spec in report.specs)
        with self._lock:
            self._done = 0
        bar = self.query_one("#init-progress", ProgressBar)
        bar.update(total=max(1, self.total), progress=0)
        bar.display = True
        self.set_status(f"Initializing {len(report.specs)} session(s)…")
        # on the app, so leaving this screen does not abandon the notification of the result
        self.app.run_worker(self._initialize(list(report.specs), resume), group="initialize", exit_on_error=False)

    def _progress(self, n: int) -> None:  # called from the worker thread
        with self._lock:
            self._done += n

    def show_progress(self) -> None:
        if self.running or self.total:
            with self._lock:
                done = min(self._done, self.total)
            self.query_one("#init-progress", ProgressBar).update(progress=done)

    async def _initialize(self, specs: list[Any], resume: bool) -> None:
        results, error = [], None
        for spec in specs:
            try:
                results.append(await asyncio.to_thread(self.backend.initialize, spec, resume=resume,
                                                       progress=self._progress))
            except Exception as exc:  # noqa: BLE001
                error = (spec.name, exc)
                break
        self.running = False
        self.results = results
        summary = "; ".join(f"{r.session}: {r.added} enqueued for {r.stage}"
                            + (f", {r.skipped} already there" if r.skipped else "") for r in results)
        if error:
            name, exc = error
            what = "Redis unreachable" if is_unavailable(exc) else describe_error(exc)
            message = f"Initialize stopped at {name}: {what}" + (f" (done before it: {summary})" if summary else "")
            self.app.notify(redact(message), severity="error", timeout=10)
        else:
            message = f"Initialized {len(results)} session(s): {summary}"
            self.app.notify(redact(message), title="initialize", timeout=8)
        if self.is_attached:
            with self._lock:
                self._done = self.total if not error else self._done
            self.show_progress()
            self.set_status(message, "bold red" if error else "bold green")
        poll_now = getattr(self.app, "poll_now", None)
        if poll_now:
            poll_now()

    def action_back(self) -> None:
        self.app.pop_screen()
