"""The console's only door to Redis: blocking calls, run by the app in worker threads.

Every method here may block on the network, so the app never calls them on the UI thread
(see :mod:`console.poller` and ``SymphonyApp.run_io``). The console uses only the names that
``symphony/engine/__init__.py`` exports.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from symphony.engine import (CancelResult, Engine, InitializeResult, RepairPlan, RepairResult, RetryResult, SessionDetail,
                    Snapshot, VerificationReport, describe_error, initialize_session, is_unavailable, verify_paths)

from .history import HEARTBEATS, HeartbeatCpu
from .sources import DetailSource, WorkerSource

log = logging.getLogger("symphony.console")

SCALE_SET_WINDOW_S = 3600.0
SCALE_SET_REFRESH_S = 5.0  # the stored series move once per 30 s bucket (heartbeats) or minute (Azure)
WORKER_EVENTS = 1000  # entries of the results stream the worker screen looks through for its tasks
WORKER_TASKS = 50
DEFAULT_PAGE = 50  # rows of the worker table a poll reads when the screen does not say
TASK_KINDS = frozenset({"completed", "failed", "timed_out", "cancelled", "retry", "reclaimed", "worker_lost"})


@dataclass(frozen=True)
class PollResult:
    snapshot: Snapshot
    scale_sets: tuple[Any, ...] = ()  # CpuSeries or the engine's ScaleSetCpu (same fields)
    reclaimed: tuple[str, ...] = ()  # one line per dead worker whose tasks this poll reclaimed
    duration_s: float = 0.0


class Backend:
    """Blocking operations over one :class:`engine.Engine`."""

    def __init__(self, eng: Engine, *, tasks_dir: str | Path = "tasks", events: int = 50, reap: bool = True):
        self.engine = eng
        self.tasks_dir = Path(tasks_dir)
        self.events = events
        self.reap_each_poll = reap
        self.heartbeat_cpu = HeartbeatCpu(SCALE_SET_WINDOW_S)
        self._engine_cpu_at = 0.0
        self._engine_cpu: tuple[Any, ...] | None = None
        self._fleet: Any = None  # the main screen's paged worker table and aggregates (engine.FleetReader)
        self._detail_reader: Any = None  # the worker screen reads no table: events and one worker

    @property
    def fleet(self) -> Any:
        if self._fleet is None:
            self._fleet = self.engine.fleet_reader()
        return self._fleet

    @property
    def display(self) -> str:
        return self.engine.display

    def close(self) -> None:
        self.engine.close()

    # --- the poll --------------------------------------------------------------------------
    def poll(self, page: Any = None) -> PollResult:
        """Reclaim dead workers' tasks ("any worker, or the console"), then read the snapshot:
        the ``page`` of the worker table (the panel's ``WorkerPage``: offset, limit) and the fleet's
        aggregates, never every worker's hash."""
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
        span = page.span if page is not None else (0, DEFAULT_PAGE)
        snapshot = self.engine.snapshot(events=self.events, reader=self.fleet, page=span)
        scale_sets = self.scale_sets(snapshot)
        return PollResult(snapshot, scale_sets, tuple(reclaimed), time.monotonic() - started)

    def scale_sets(self, snapshot: Snapshot) -> tuple[Any, ...]:
        """CPU per scale set from the series the engine stores (Azure Monitor while fresh, else
        the hosts' heartbeat samples per pool). Until the engine has any (the first 30 s of a new
        fleet), or if reading them fails, the console's own per-pool figures from the snapshot's
        heartbeats, with the history it kept since it started."""
        history = self.heartbeat_cpu.update(snapshot)  # always kept, so the fallback has a history
        now = time.monotonic()
        if self._engine_cpu is None or now - self._engine_cpu_at >= SCALE_SET_REFRESH_S:
            try:
                self._engine_cpu = tuple(self.engine.scale_set_cpu(window_s=SCALE_SET_WINDOW_S))
            except Exception as exc:  # noqa: BLE001
                if is_unavailable(exc):
                    raise
                log.warning("scale-set CPU unavailable, showing worker heartbeats: %s", describe_error(exc))
                self._engine_cpu = None
                return history
            self._engine_cpu_at = now
        if not self._engine_cpu:
            return history
        # The stored heartbeat series move once per 30 s bucket and reach back before the console
        # started; the snapshots have each second's figure. So for those: the stored points until
        # the console's own begin, then the console's, and "now" from this very snapshot.
        live = {s.name: s for s in history}
        merged = []
        for series in self._engine_cpu:
            mine = live.get(series.name)
            if series.source == HEARTBEATS and mine is not None and mine.points:
                first = mine.points[0][0]
                points = tuple(p for p in series.points if p[0] < first) + tuple(mine.points)
                series = dataclasses.replace(series, points=points, current=mine.current, instances=mine.instances)
            merged.append(series)
        return tuple(merged)

    # --- a session's detail ----------------------------------------------------------------
    def detail(self, session: str) -> DetailSource:
        detail: SessionDetail = self.engine.session_detail(session)
        seconds, micros = self.engine.client.time()  # failure times are server times
        return DetailSource(detail, seconds + micros / 1_000_000)

    # --- a worker's detail -----------------------------------------------------------------
    def worker(self, worker_id: str) -> WorkerSource:
        """The worker's status, its recent tasks (the newest entries of the results stream that
        name it), and its host's CPU history."""
        if self._detail_reader is None:
            self._detail_reader = self.engine.fleet_reader(aggregates=False)
        snapshot = self.engine.snapshot(events=WORKER_EVENTS, reader=self._detail_reader, page=(0, 0))
        status = self.engine.worker_status(worker_id)
        tasks = tuple(e for e in snapshot.events if e.worker == worker_id and e.kind in TASK_KINDS)[:WORKER_TASKS]
        host = None
        if status is not None:
            hosts = self.engine.host_cpu(window_s=SCALE_SET_WINDOW_S, pool=status.pool or None)
            host = next((h for h in hosts if h.host == status.host), None)
        return WorkerSource(worker_id, snapshot.taken_at, status, tasks, host)

    # --- actions ---------------------------------------------------------------------------
    def plan_repair(self, session: str, *, retry_failed: bool = False) -> RepairPlan:
        return self.engine.plan_repair(session, retry_failed=retry_failed, tasks_dir=str(self.tasks_dir))

    def repair(self, plan: RepairPlan) -> RepairResult:
        return self.engine.repair(plan)

    def cancel(self, session: str) -> CancelResult:
        return self.engine.cancel(session)

    def pause(self, session: str):
        return self.engine.pause(session)

    def resume(self, session: str):
        return self.engine.resume(session)

    def retry(self, session: str) -> RetryResult:
        return self.engine.retry(session)

    def session_files(self) -> list[Path]:
        if not self.tasks_dir.is_dir():
            return []
        return sorted(p for p in self.tasks_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))

    def verify(self, paths: Sequence[str | Path], *, resume: bool = False) -> VerificationReport:
        return verify_paths([str(p) for p in paths], engine=self.engine, resume=resume, tasks_dir=self.tasks_dir)

    def initialize(self, spec: Any, *, resume: bool = False,
                   progress: Callable[[int], None] | None = None) -> InitializeResult:
        return initialize_session(self.engine, spec, resume=resume, progress=progress)
