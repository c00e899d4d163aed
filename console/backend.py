"""The console's only door to Redis: blocking calls, run by the app in worker threads.

Every method here may block on the network, so the app never calls them on the UI thread
(see :mod:`console.poller` and ``SymphonyApp.run_io``). The console uses only the names that
``engine/__init__.py`` exports. Engine features that other issues deliver (repair, cancel,
retry, session detail, verification: issue 3; scale-set metrics: issue 5) are looked up by
name, so the console works, and says clearly what is missing, on an engine without them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import engine as engine_api
from engine import Engine, Snapshot, SpecError, describe_error, initialize_session, is_unavailable, load_session

from .history import CpuSeries, HeartbeatCpu

log = logging.getLogger("symphony.console")

SCALE_SET_WINDOW_S = 3600.0
SCALE_SET_REFRESH_S = 10.0  # the engine's scale-set query may call Azure Monitor: not every poll


class NotAvailable(Exception):
    """This engine does not offer the operation (yet)."""


@dataclass(frozen=True)
class PollResult:
    snapshot: Snapshot
    scale_sets: tuple[Any, ...] = ()  # CpuSeries or the engine's ScaleSetCpu (same fields)
    reclaimed: tuple[str, ...] = ()  # one line per dead worker whose tasks this poll reclaimed
    duration_s: float = 0.0


@dataclass(frozen=True)
class Verification:
    """The same fields as the engine's ``VerificationReport``."""

    files: tuple[str, ...]
    specs: tuple[Any, ...]
    problems: tuple[Any, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.specs)


@dataclass(frozen=True)
class DetailView:
    """The same fields as the engine's ``SessionDetail`` (used when the engine has none)."""

    status: Any
    queues: tuple[Any, ...]
    failures: tuple[Any, ...] = ()
    last_job_id: str | None = None
    last_job: dict[str, str] = field(default_factory=dict)


def _engine_feature(eng: Engine, name: str, issue: str) -> Callable[..., Any]:
    method = getattr(eng, name, None)
    if method is None:
        raise NotAvailable(f"this engine has no {name}() yet ({issue})")
    return method


class Backend:
    """Blocking operations over one :class:`engine.Engine`."""

    def __init__(self, eng: Engine, *, tasks_dir: str | Path = "tasks", events: int = 50,
                 reap: bool = True):
        self.engine = eng
        self.tasks_dir = Path(tasks_dir)
        self.events = events
        self.reap_each_poll = reap
        self.heartbeat_cpu = HeartbeatCpu(SCALE_SET_WINDOW_S)
        self._engine_cpu_at = 0.0
        self._engine_cpu: tuple[Any, ...] | None = None

    @property
    def display(self) -> str:
        return self.engine.display

    def close(self) -> None:
        self.engine.close()

    # --- the poll --------------------------------------------------------------------------
    def poll(self) -> PollResult:
        """Reclaim dead workers' tasks ("any worker, or the console"), then read the snapshot."""
        started = time.monotonic()
        reclaimed: list[str] = []
        if self.reap_each_poll:
            try:
                for report in self.engine.reap():
                    if report.tasks:
                        reclaimed.append(f"reclaimed {report.tasks} task(s) of lost worker {report.worker}")
            except Exception as exc:  # an ACL user without the scripts' rights must still see the screen
                if is_unavailable(exc):
                    raise
                log.warning("reap failed: %s", describe_error(exc))
        snapshot = self.engine.snapshot(events=self.events)
        scale_sets = self.scale_sets(snapshot)
        return PollResult(snapshot, scale_sets, tuple(reclaimed), time.monotonic() - started)

    def scale_sets(self, snapshot: Snapshot) -> tuple[Any, ...]:
        """CPU per scale set: the engine's collector (Azure Monitor, issue 5) when it has one,
        otherwise the workers' heartbeats grouped by pool."""
        history = self.heartbeat_cpu.update(snapshot)  # always kept, so a fallback has its history
        engine_cpu = getattr(self.engine, "scale_set_cpu", None)
        if engine_cpu is None:
            return history
        now = time.monotonic()
        if self._engine_cpu is None or now - self._engine_cpu_at >= SCALE_SET_REFRESH_S:
            try:
                self._engine_cpu = tuple(engine_cpu(window_s=SCALE_SET_WINDOW_S))
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                log.warning("scale-set CPU unavailable, using worker heartbeats: %s", describe_error(exc))
                self._engine_cpu = None
                return history
            self._engine_cpu_at = now
        return self._engine_cpu or history

    # --- a session's detail ----------------------------------------------------------------
    def detail(self, session: str) -> Any:
        method = getattr(self.engine, "session_detail", None)
        if method is not None:
            return method(session)
        snapshot = self.engine.snapshot(events=0)
        status = next((s for s in snapshot.sessions if s.name == session), None)
        if status is None:
            raise engine_api.UnknownSession(f"no session named {session!r}")
        failures: tuple[Any, ...] = ()
        failures_method = getattr(self.engine, "failures", None)
        if failures_method is not None:
            failures = tuple(failures_method(session))
        job_id, job = self.engine.last_job(session)
        return DetailView(status, tuple(q for q in snapshot.queues if q.session == session), failures, job_id, job)

    # --- actions ---------------------------------------------------------------------------
    def plan_repair(self, session: str, *, retry_failed: bool = False) -> Any:
        plan = _engine_feature(self.engine, "plan_repair", "issue 3")
        return plan(session, retry_failed=retry_failed, tasks_dir=str(self.tasks_dir))

    def repair(self, plan: Any) -> Any:
        return _engine_feature(self.engine, "repair", "issue 3")(plan)

    def cancel(self, session: str) -> Any:
        return _engine_feature(self.engine, "cancel", "issue 3")(session)

    def retry(self, session: str) -> Any:
        return _engine_feature(self.engine, "retry", "issue 3")(session)

    def session_files(self) -> list[Path]:
        if not self.tasks_dir.is_dir():
            return []
        return sorted(p for p in self.tasks_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))

    def verify(self, paths: Sequence[str | Path], *, resume: bool = False) -> Any:
        verify_paths = getattr(engine_api, "verify_paths", None)
        if verify_paths is not None:
            return verify_paths([str(p) for p in paths], engine=self.engine, resume=resume)
        specs, problems = [], []
        for path in paths:
            try:
                specs.append(load_session(path))
            except SpecError as exc:
                problems.extend(exc.problems)
        return Verification(tuple(str(p) for p in paths), tuple(specs), tuple(problems))

    def initialize(self, spec: Any, *, resume: bool = False, progress: Callable[[int], None] | None = None) -> Any:
        return initialize_session(self.engine, spec, resume=resume, progress=progress)
