"""The tracker: moves each recorded SLURM job into the state set SLURM says it is in.

Each poll reads the live ids of every tag of this cluster from Redis, asks SLURM about all of
them in one call (``sacct`` when the cluster has accounting storage, else ``squeue``), and moves
each tag's jobs in one atomic step. Only jobs in PENDING_AND_RUNNING are asked about, so a poll
costs the same however many jobs finished long ago.

Run it as a daemon (``symphony slurm track``) or as a thread in another process
(:class:`TrackerThread`, e.g. in the console). Any number may run: one lock per cluster lets
one of them poll, the others stand by and take over within a lock's TTL when it stops; a tracker
that lost its lock (paused, cut off) can never apply what it saw (the move is fenced by the lock's
token). It keeps nothing but a counter in memory, so it can be stopped and restarted at any time.

Without accounting, ``squeue`` forgets a job ``MinJobAge`` (300 s by default) after it ended; a
tracked job missing from two polls in a row goes to UNKNOWN (with a note saying so).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from symphony.engine import Engine, JobSet, LockLost, Observation, PolicyNotice, describe_error, is_unavailable

from .client import SlurmClient, SlurmError
from .states import PENDING, Seen

log = logging.getLogger("symphony.slurm.tracker")
MISSING_POLLS = 2  # polls in a row a job must be missing from squeue before it counts as UNKNOWN
FORGOTTEN = ("SLURM no longer knows this job (it ended more than MinJobAge ago, or the controller lost its "
             "state) and the cluster has no accounting storage to ask")


@dataclass(frozen=True)
class PollReport:
    active: bool  # this tracker held the lock and polled
    holder: str = ""  # who holds the lock when we do not
    tags: int = 0
    jobs: int = 0  # live ids asked about
    moved: int = 0  # jobs that changed set
    pending: int = 0
    running: int = 0
    source: str = ""  # squeue | sacct
    slurm_s: float = 0.0  # time in the SLURM call
    seconds: float = 0.0  # the whole poll
    error: str = ""


def lock_name(cluster: str) -> str:
    return f"tracker:{cluster}"


class Tracker:
    def __init__(self, engine: Engine, slurm: SlurmClient, *, interval_s: float = 10.0,
                 tags: Sequence[str] | None = None, lock_ttl_s: float | None = None):
        self.engine, self.slurm, self.interval_s = engine, slurm, interval_s
        self.only = set(tags or ())
        self.cluster = slurm.cluster()
        self.holder = f"{socket.gethostname().split('.')[0]} pid {os.getpid()}"
        self.lease = engine.slurm.lock(lock_name(self.cluster), lock_ttl_s or max(5.0, 3 * interval_s))
        self.missing: dict[tuple[str, str], int] = {}
        self._announced_standby = False
        self.policy = PolicyNotice(log, "the SLURM tracker")  # Redis' eviction policy, said once per change

    def _tags(self) -> list[str]:
        return [t.tag for t in self.engine.slurm.tags()
                if (not self.only or t.tag in self.only) and t.cluster in ("", self.cluster)]

    def _ask(self, ids: list[str]) -> tuple[dict[str, Seen], str]:
        if self.slurm.has_accounting():
            try:
                return self.slurm.sacct(ids), "sacct"
            except SlurmError as exc:  # slurmdbd down: the controller still knows recent jobs
                log.warning("sacct failed (%s); asking squeue this time", exc)
        return self.slurm.squeue(ids), "squeue"

    def _observe(self, tag: str, ids: list[str], seen: dict[str, Seen], source: str) -> tuple[list[Observation], int, int]:
        observations: list[Observation] = []
        pending = running = 0
        for job_id in ids:
            line = seen.get(job_id)
            if line is not None:
                self.missing.pop((tag, job_id), None)
                obs = line.observation()
                if obs.set is JobSet.PENDING_AND_RUNNING:
                    if line.state == PENDING:
                        pending += 1
                    else:
                        running += 1
                observations.append(obs)
                continue
            misses = self.missing[(tag, job_id)] = self.missing.get((tag, job_id), 0) + 1
            if source == "squeue" and misses >= MISSING_POLLS:
                self.missing.pop((tag, job_id), None)
                observations.append(Observation(id=job_id, set=JobSet.UNKNOWN, state="", note=FORGOTTEN))
            else:
                pending += 1  # not seen yet (just submitted, or sacct lags behind): still live
        return observations, pending, running

    def poll(self) -> PollReport:
        """One look at SLURM for every live job of this cluster (if this tracker holds the lock)."""
        started = time.monotonic()
        self.policy.check(self.engine)  # Redis' eviction policy: at start, after a reconnect, once per change
        if not self.lease.acquire(self.holder):
            return PollReport(active=False, holder=self.lease.holder())
        tags = self._tags()
        live = self.engine.slurm.live(tags) if tags else {}
        ids = sorted({job_id for group in live.values() for job_id in group})
        seen: dict[str, Seen] = {}
        source, slurm_s = "", 0.0
        if ids:
            t0 = time.monotonic()
            seen, source = self._ask(ids)
            slurm_s = time.monotonic() - t0
        moved = pending_total = running_total = 0
        for tag in tags:
            observations, pending, running = self._observe(tag, live.get(tag, []), seen, source)
            changed, _ = self.engine.slurm.move(tag, observations, token=self.lease.token, pending=pending,
                                                running=running, lock=lock_name(self.cluster))
            moved += changed
            pending_total += pending
            running_total += running
        return PollReport(active=True, tags=len(tags), jobs=len(ids), moved=moved, pending=pending_total,
                          running=running_total, source=source, slurm_s=slurm_s, seconds=time.monotonic() - started)

    def poll_safely(self) -> PollReport:
        """:meth:`poll`, with SLURM and Redis trouble reported instead of raised."""
        try:
            report = self.poll()
        except LockLost as exc:
            log.warning("%s; another tracker took over", exc)
            return PollReport(active=False, error=str(exc))
        except SlurmError as exc:
            log.warning("%s; trying again in %.0fs", exc, self.interval_s)
            return PollReport(active=True, error=str(exc))
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("Redis unavailable (%s); trying again in %.0fs", describe_error(exc), self.interval_s)
            self.policy.lost()
            return PollReport(active=False, error=describe_error(exc))
        if not report.active and not self._announced_standby:
            log.info("another tracker is active for cluster %s (%s); standing by", self.cluster, report.holder)
        self._announced_standby = not report.active
        return report

    def run(self, stop: threading.Event, on_poll=None) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; release the lock at the end."""
        try:
            while not stop.is_set():
                report = self.poll_safely()
                if on_poll is not None:
                    on_poll(report)
                stop.wait(self.interval_s)
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.lease.release()
        except Exception as exc:  # Redis gone: the lock expires by itself
            log.debug("could not release the tracker lock: %s", describe_error(exc))


class TrackerThread:
    """The tracker in a daemon thread of another process (the console): ``start()``, ``stop()``."""

    def __init__(self, engine: Engine, slurm: SlurmClient | None = None, *, interval_s: float = 10.0):
        self.tracker = Tracker(engine, slurm or SlurmClient(), interval_s=interval_s)
        self.stop_event = threading.Event()
        self.last: PollReport | None = None
        self.thread = threading.Thread(target=self.tracker.run, args=(self.stop_event, self._keep), name="slurm-tracker",
                                       daemon=True)

    def _keep(self, report: PollReport) -> None:
        self.last = report

    def start(self) -> "TrackerThread":
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
