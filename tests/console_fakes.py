"""Deterministic data for the console's snapshot tests: fixed snapshots, a fixed clock, and a
backend that serves them (no Redis, no timing: the screens look the same on every run)."""
from __future__ import annotations

from pathlib import Path

from symphony.console.backend import PollResult
from symphony.console.history import CpuSeries
from symphony.console.sources import DetailSource, WorkerSource
from symphony.engine import (Event, HostCpu, OutcomeKind, OutcomeRecord, QueueStatus, SessionDetail, SessionStatus,
                             Snapshot, WorkerStatus)

T0 = 1_790_000_000.0  # server time of the first snapshot
STAGES = ("rvm", "preprocess", "detection", "process")
POOLS = ("windows", "windows", "linux", "linux")
DISPLAY = "redis://redis.example:6379/0"


def queues(t: float) -> tuple[QueueStatus, ...]:
    k = 0 if t == T0 else 1  # the second snapshot: 30 s later, more done
    block7 = [
        dict(queued=40 - 12 * k, in_flight=4, completed=156 + 12 * k, enqueued=200),
        dict(queued=9, delayed=2, in_flight=4, completed=140 + 9 * k, failed=3, retried=5, enqueued=156 + 12 * k),
        dict(queued=12, in_flight=2, completed=120 + 6 * k, timed_out=1, enqueued=140 + 9 * k),
        dict(queued=3, in_flight=1, completed=110 + 6 * k, enqueued=120 + 6 * k),
    ]
    out = [QueueStatus(role=s, session="block7-2026-06-01", pool=p, **c) for s, p, c in zip(STAGES, POOLS, block7)]
    out += [QueueStatus(role=s, session="block9-2026-06-02", pool=p, queued=0, completed=0, cancelled=50 if i == 0 else 0,
                        enqueued=50 if i == 0 else 0) for i, (s, p) in enumerate(zip(STAGES, POOLS))]
    return tuple(out)


def sessions(t: float) -> tuple[SessionStatus, ...]:
    k = 0 if t == T0 else 1
    return (
        SessionStatus(name="block7-2026-06-01", state="active", pipeline="scan", stages=STAGES, items=200,
                      created=T0 - 900, file="/srv/symphony/tasks/block7.yaml", queued=66 - 12 * k, in_flight=11,
                      completed=110 + 6 * k, failed=3, timed_out=1),
        SessionStatus(name="block9-2026-06-02", state="cancelled", pipeline="scan", stages=STAGES, items=50,
                      created=T0 - 300, file="/srv/symphony/tasks/block9.yaml", cancelled=50),
    )


def workers() -> tuple[WorkerStatus, ...]:
    def w(id, host, pool, pid, state, current, cur_age, beat, cpu, host_cpu, rss, done):
        return WorkerStatus(id=id, name=id.rsplit("-", 1)[0], host=host, pid=pid, pool=pool,
                            roles=("rvm", "preprocess") if pool == "windows" else ("detection", "process"),
                            state=state, current=current, current_age_s=cur_age, heartbeat_age_s=beat,
                            cpu_percent=cpu, memory_percent=1.2, host_cpu_percent=host_cpu, host_memory_percent=41.0,
                            rss_bytes=rss, heartbeat_s=5.0, started=T0 - 3600, supervisor="sup", completed=done)
    return (
        w("win-vm0-0-a1b2c3", "win-vm0", "windows", 4101, "busy", "rvm:row-161@block7-2026-06-01", 3.2, 1.1, 24.0,
          81.0, 48_000_000, 61),
        w("win-vm0-1-d4e5f6", "win-vm0", "windows", 4102, "busy", "preprocess:row-150@block7-2026-06-01", 0.8, 1.4,
          22.0, 81.0, 51_000_000, 58),
        w("win-vm1-0-0a0b0c", "win-vm1", "windows", 5230, "stale", "rvm:row-158@block7-2026-06-01", 14.0, 9.6, 0.0,
          None, 47_000_000, 37),
        w("lnx-vm0-0-778899", "lnx-vm0", "linux", 901, "busy", "detection:row-131@block7-2026-06-01", 12.5, 0.6, 93.0,
          96.0, 212_000_000, 44),
        w("lnx-vm0-1-aabbcc", "lnx-vm0", "linux", 902, "idle", "", None, 2.0, 0.0, 96.0, 96_000_000, 40),
        w("lnx-vm2-0-ddeeff", "lnx-vm2", "linux", 733, "dead", "detection:row-129@block7-2026-06-01", 95.0, 31.0,
          None, None, None, 12),
    )


def events(t: float) -> tuple[Event, ...]:
    base = [
        Event(id=f"{int((t - 1) * 1000)}-0", time=t - 1, kind="completed", session="block7-2026-06-01",
              stage="process", item="row-110", attempts=1, duration_ms=212, worker="lnx-vm0-1-aabbcc"),
        Event(id=f"{int((t - 2.5) * 1000)}-0", time=t - 2.5, kind="failed", session="block7-2026-06-01",
              stage="preprocess", item="row-077", message="exit code 2: frames.bin not found", attempts=3,
              duration_ms=3100, worker="win-vm0-1-d4e5f6"),
        Event(id=f"{int((t - 4) * 1000)}-0", time=t - 4, kind="completed", session="block7-2026-06-01",
              stage="rvm", item="row-160", attempts=1, duration_ms=402, worker="win-vm0-0-a1b2c3"),
        Event(id=f"{int((t - 7) * 1000)}-0", time=t - 7, kind="timed_out", session="block7-2026-06-01",
              stage="detection", item="row-042", message="timed out after 60s", attempts=3, worker="lnx-vm0-0-778899"),
        Event(id=f"{int((t - 40) * 1000)}-0", time=t - 40, kind="worker_lost", session="", message=
              "lnx-vm2-0-ddeeff: lease lapsed, 1 task(s) requeued", worker="lnx-vm2-0-ddeeff"),
        Event(id=f"{int((t - 300) * 1000)}-0", time=t - 300, kind="cancel", session="block9-2026-06-02",
              message="session block9-2026-06-02 cancelled: 50 waiting task(s) cancelled, 0 running"),
    ]
    return tuple(base)


def worker_events(t: float) -> tuple[Event, ...]:
    """The results stream of one busy worker: its last dozen tasks."""
    out = []
    for i in range(12):
        kind = "failed" if i == 4 else ("retry" if i == 7 else "completed")
        out.append(Event(id=f"{int((t - 3 - 9 * i) * 1000)}-0", time=t - 3 - 9 * i, kind=kind,
                         session="block7-2026-06-01", stage="preprocess" if i % 2 else "rvm", item=f"row-{160 - i:03d}",
                         message="exit code 2: frames.bin not found" if kind != "completed" else "",
                         attempts=3 if kind == "failed" else (2 if kind == "retry" else 1),
                         duration_ms=400 + 37 * i, worker="win-vm0-0-a1b2c3"))
    return tuple(out)


def snapshot(t: float = T0) -> Snapshot:
    return Snapshot(taken_at=t, redis=DISPLAY, queues=queues(t), sessions=sessions(t), workers=workers(),
                    events=events(t), used_memory=12_345_678)


def scale_sets(t: float) -> tuple[CpuSeries, ...]:
    # an hour of Azure Monitor minutes for the Windows scale set, a few minutes of heartbeats for Linux
    win = tuple((t - 3600 + 60 * i, 40 + 35 * ((i * 7) % 11) / 10) for i in range(61))
    lnx = tuple((t - 240 + 10 * i, 60 + (i * 13) % 37) for i in range(25))
    return (
        CpuSeries("vmss-scan-win", "azure monitor", win[-1][1], win, 2),
        CpuSeries("linux", "worker heartbeats", 96.0, lnx, 1),
    )


class FakeBackend:
    """Serves the first snapshot once, then the second one forever (so throughputs have a minute)."""

    def __init__(self, tasks_dir: Path | str = "tasks"):
        self.display = DISPLAY
        self.tasks_dir = Path(tasks_dir)
        self.polls = 0

    def poll(self, page=None) -> PollResult:
        t = T0 if self.polls == 0 else T0 + 30
        self.polls += 1
        return PollResult(snapshot(t), scale_sets(t))

    def detail(self, session: str) -> DetailSource:
        snap = snapshot(T0 + 30)
        status = next(s for s in snap.sessions if s.name == session)
        failures = (
            OutcomeRecord(item="row-077", stage="preprocess", state=OutcomeKind.FAILED,
                          error="exit code 2: frames.bin not found",
                          stderr="reading /data/block7/rvm/row-077.json\nTraceback (most recent call last):\n"
                                 "  File \"preprocess.py\", line 41, in main\nFileNotFoundError: frames.bin\n",
                          attempts=3, at_ms=int((T0 + 27.5) * 1000), worker="win-vm0-1-d4e5f6"),
            OutcomeRecord(item="row-042", stage="detection", state=OutcomeKind.TIMED_OUT, error="timed out after 60s",
                          stderr="loading model weights\n", attempts=3, at_ms=int((T0 + 23) * 1000),
                          worker="lnx-vm0-0-778899"),
        )
        detail = SessionDetail(status=status, queues=tuple(q for q in snap.queues if q.session == session),
                               failures=failures, last_job_id="process:row-110",
                               last_job={"clusters": "447", "yield_kg": "53.64", "vines": "38"}, file=status.file)
        return DetailSource(detail, snap.taken_at)

    def worker(self, worker_id: str) -> WorkerSource:
        t = T0 + 30
        status = next((w for w in workers() if w.id == worker_id), None)
        tasks = tuple(e for e in worker_events(t) if e.worker == worker_id)
        host = None
        if status is not None:
            points = tuple((t - 3600 + 30 * i, 50 + (i * 17) % 45) for i in range(121))
            host = HostCpu(host=status.host, pool=status.pool, current=points[-1][1], memory=41.0, cpus=8,
                           last_seen=t, points=points)
        return WorkerSource(worker_id, t, status, tasks, host)

    def session_files(self) -> list[Path]:
        return []

    def close(self) -> None:
        pass


def fixed_clock() -> float:
    return 1000.0
