"""Adaptive scaling (dask-jobqueue's ``adapt``): as many SLURM jobs as the pool's work needs.

Every interval: the tracker's poll (so job states are fresh), then the pool's work (tasks
queued, retrying or running at its stages, over the active sessions), then

    target = clamp(ceil(work / per_job), min, max)

where ``per_job`` is the number of worker processes each job runs. Below the target it submits
(one job array), but never so many that more than ``max_pending`` jobs wait in SLURM's queue: a
cluster that cannot start them gets no pile of pending jobs. Above the target it cancels jobs
that are still pending (newest first); running jobs are burst workers and leave by themselves
when the pool's work is done. Jobs submitted to keep ``min`` alive are not burst workers (they
would only leave and be replaced); all others are.

One adapter per tag runs at a time (a lock in Redis); a second one stands by.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
from dataclasses import dataclass

from symphony.engine import Engine, JobSet, RedisConfig, describe_error, is_unavailable

from .client import SlurmClient, SlurmError
from .script import ScriptOptions, render
from .submit import submit
from .tracker import Tracker

log = logging.getLogger("symphony.slurm.adapt")


@dataclass(frozen=True)
class AdaptPlan:
    work: int
    pending: int
    running: int
    target: int
    submit: int = 0
    cancel: int = 0

    @property
    def live(self) -> int:
        return self.pending + self.running


def plan(work: int, pending: int, running: int, *, minimum: int, maximum: int, per_job: int,
         max_pending: int) -> AdaptPlan:
    """How many jobs to submit or cancel now (pure: the policy, tested on its own)."""
    target = max(minimum, min(maximum, math.ceil(max(0, work) / max(1, per_job))))
    live = pending + running
    add = cancel = 0
    if target > live:
        add = max(0, min(target - live, max_pending - pending, maximum - live))
    elif target < live:
        cancel = min(live - target, pending)
    return AdaptPlan(work=work, pending=pending, running=running, target=target, submit=add, cancel=cancel)


@dataclass(frozen=True)
class AdaptLimits:
    minimum: int = 0
    maximum: int = 20
    per_job: int = 1
    max_pending: int = 4
    interval_s: float = 10.0

    def check(self) -> None:
        from symphony.engine import ConfigError

        if self.minimum < 0 or self.maximum < 1 or self.minimum > self.maximum:
            raise ConfigError("--min and --max must satisfy 0 <= --min <= --max and --max >= 1")
        if self.per_job < 1 or self.max_pending < 1:
            raise ConfigError("--per-job and --max-pending must be at least 1")
        if self.interval_s <= 0:
            raise ConfigError("--interval must be positive")


class Adapter:
    def __init__(self, engine: Engine, slurm: SlurmClient, options: ScriptOptions, limits: AdaptLimits,
                 config: RedisConfig, *, password_file: str | None = None, key_file: str | None = None,
                 tracker: Tracker | None = None):
        limits.check()
        self.engine, self.slurm, self.limits = engine, slurm, limits
        self.options = dataclasses.replace(options, processes=limits.per_job)
        self.burst_script = render(dataclasses.replace(self.options, burst=True), config, password_file=password_file,
                                   key_file=key_file)
        self.steady_script = render(dataclasses.replace(self.options, burst=False), config,
                                    password_file=password_file, key_file=key_file)
        self.tag, self.pool = self.options.tag_name, self.options.pool
        self.tracker = tracker or Tracker(engine, slurm, interval_s=limits.interval_s)
        self.lease = engine.slurm.lock(f"adapt:{self.tag}", max(10.0, 3 * limits.interval_s))
        self.holder = f"{socket.gethostname().split('.')[0]} pid {os.getpid()}"
        self.history: list[AdaptPlan] = []

    def _work(self) -> int:
        roles = set(self.engine.roles_for(self.pool))
        snap = self.engine.snapshot(events=0)
        active = {s.name for s in snap.sessions if s.state == "active"}
        return sum(q.queued + q.delayed + q.in_flight for q in snap.queues if q.role in roles and q.session in active)

    def _pending_ids(self, count: int) -> list[str]:
        live = self.engine.slurm.live([self.tag]).get(self.tag, [])
        jobs = [j for j in self.engine.slurm.jobs(self.tag, live) if j.set is JobSet.PENDING_AND_RUNNING
                and j.state in ("", "PENDING")]
        jobs.sort(key=lambda j: j.submitted or 0.0, reverse=True)
        return [j.id for j in jobs[:count]]

    def step(self) -> AdaptPlan | None:
        """One round: poll, decide, act. None while another adapter holds this tag."""
        if not self.lease.acquire(self.holder):
            return None
        self.tracker.poll_safely()
        summary = self.engine.slurm.tag(self.tag)
        pending, running = (summary.pending, summary.running) if summary else (0, 0)
        decision = plan(self._work(), pending, running, minimum=self.limits.minimum, maximum=self.limits.maximum,
                        per_job=self.limits.per_job, max_pending=self.limits.max_pending)
        if decision.submit:
            steady = max(0, min(decision.submit, self.limits.minimum - decision.live))
            for count, script in ((steady, self.steady_script), (decision.submit - steady, self.burst_script)):
                if count:
                    result = submit(self.engine, self.slurm, script, tag=self.tag, pool=self.pool, jobs=count)
                    log.info("work %d, jobs %d pending + %d running, target %d: submitted %d (%s)", decision.work,
                             pending, running, decision.target, count, ", ".join(result.ids))
        if decision.cancel:
            ids = self._pending_ids(decision.cancel)
            if ids:
                self.slurm.scancel(ids)
                log.info("work %d, target %d: cancelled %d pending job(s) (%s)", decision.work, decision.target,
                         len(ids), ", ".join(ids))
        if decision.submit or decision.cancel:
            self.tracker.poll_safely()
        self.history.append(decision)
        del self.history[:-1000]
        return decision

    def run(self, stop: threading.Event, on_step=None) -> None:
        announced = False
        try:
            while not stop.is_set():
                try:
                    decision = self.step()
                except SlurmError as exc:
                    log.warning("%s; trying again in %.0fs", exc, self.limits.interval_s)
                    decision = None
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                    log.warning("Redis unavailable (%s); trying again", describe_error(exc))
                    decision = None
                if decision is None and not self.lease.held and not announced:
                    log.info("another adapter runs for tag %s (%s); standing by", self.tag, self.lease.holder())
                announced = decision is None and not self.lease.held
                if on_step is not None and decision is not None:
                    on_step(decision)
                stop.wait(self.limits.interval_s)
        finally:
            self.lease.release()
            self.tracker.close()
