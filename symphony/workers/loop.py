"""A worker process's main loop: claim, run, report, in as few round trips as it can.

Each round trip (``WorkerLink.step``) sends the reports of the tasks that finished and claims
the next ones. While tasks are short the loop claims several at once (prefetch, bounded by
time: about :data:`PREFETCH_BUDGET_S` of work) and reports them together with the next claim; a
report that waited longer than :data:`REPORT_DELAY_S` goes at once (the next task may be long).
With nothing to do it blocks on its roles' bells. When Redis is unavailable it keeps its
reports, backs off and says so once; a burst worker gives up after ``give_up_after_s``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Sequence

from symphony.engine import (Backoff, Claimed, Engine, Finish, OutcomeKind, StepResult, WorkerLink, describe_error,
                             is_out_of_memory, is_unavailable)

from . import logs
from .dispatch import Dispatcher, tally_key
from .health import HostState
from .memory import MemoryNotice
from .options import WorkerOptions
from .stopping import Stopping

log = logging.getLogger("symphony.worker")
EXIT_OK, EXIT_REFUSED, EXIT_GAVE_UP, EXIT_DRAINED = 0, 3, 4, 5  # drained: exited on an operator's drain (not restarted)
PREFETCH_BUDGET_S = 0.01  # claim several tasks at once only while they take less than this, together
# (half of REPORT_DELAY_S: a batch normally ends before its first report has to go on its own)
REPORT_DELAY_S = 0.02  # a finished task's report waits at most this long for the next claim
EAGER_CLAIMS = 16  # claims in a row while the hint says a queue is eligible, before blocking on the bells


def eviction_refusal(engine: Engine, options: WorkerOptions) -> str | None:
    """Why this worker must not run on ``engine``'s Redis (its maxmemory-policy can delete
    Symphony's keys and the operator did not accept it), or None. A server whose settings
    cannot be read (an ACL user without INFO, Redis unavailable) is not refused."""
    if options.accept_eviction:
        return None
    try:
        return engine.server_info().policy_refusal
    except Exception:  # noqa: BLE001 - unreadable now: looked at again after the next reconnect
        return None


class GaveUp(Exception):
    """Redis was unavailable for longer than the worker may wait."""


class TaskLoop:
    def __init__(self, engine: Engine, link: WorkerLink, options: WorkerOptions, stopping: Stopping,
                 dispatcher: Dispatcher, *, roles_stale: threading.Event | None = None,
                 host: HostState | None = None, memory: MemoryNotice | None = None):
        self.engine, self.link, self.options = engine, link, options
        self.host = host  # this host's health: no claims while it is set aside
        self.stopping, self.dispatcher = stopping, dispatcher
        self.roles_stale = roles_stale or threading.Event()  # set by the heart when the registry changed
        self.state = "starting"
        self.tally: Counter[str] = Counter()  # recorded outcomes (the burst summary)
        self.backoff = Backoff()
        self.pending: list[Finish] = []  # finished, not yet reported (sent with the next claim)
        self._oldest = 0.0  # when the oldest pending report was made
        self._roles_loaded = False
        self._resending = False  # the reports being sent are a retry after a failed attempt
        self._avg_s: float | None = None  # running average of task durations (decides prefetch)
        self._down_since: float | None = None
        self.memory = memory or MemoryNotice(engine)  # Redis out of memory: said once (shared with the heart)
        self._policy_due = 0.0  # when to look at Redis' maxmemory-policy again (monotonic)
        self.refused: str | None = None  # why this worker stopped claiming: an evicting policy
        dispatcher.before_exit = self._report_before_exit

    def _report_before_exit(self) -> None:
        """The process is about to end (an inline handler overran): send the finished tasks' reports."""
        if self.pending:
            self.link.step(list(self.pending), claim=False)

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        try:
            return self._run()
        except GaveUp as exc:
            log.error("%s", exc)
            return EXIT_GAVE_UP

    def _run(self) -> int:
        eager = 0
        while True:
            stopping = self.stopping.requested or self.refused is not None
            if stopping and not self.pending:
                if self.refused is not None:
                    return EXIT_REFUSED
                if self.stopping.exiting:
                    return EXIT_DRAINED if self.stopping.drained else EXIT_OK
                self.state = "drained"  # drained, staying up: claim nothing until undrained
                self.stopping.rest(self.options.idle_wait_s)
                continue
            if not stopping and self.host is not None and self.host.quarantined():
                self.state = "quarantined"
                if self.pending:
                    self._step(claim=False, want=1)
                self.stopping.wait(max(0.05, min(1.0, self.host.left_s())))
                continue
            result = self._step(claim=not stopping, want=self._want())
            if result is None or stopping:
                continue
            if result.batch:
                eager = 0
                self._run_batch(result.batch)
            elif result.eligible and eager < EAGER_CLAIMS:
                eager += 1
            else:
                eager = 0
                if self._idle(result):
                    return EXIT_OK

    def _want(self) -> int:
        """How many tasks to claim at once: one, unless this worker's tasks are short (prefetch).

        A claimed task sits in this worker's in-flight list until it is reported, so prefetch is
        bounded by time: at most about ``PREFETCH_BUDGET_S`` of work (by the running average of
        recent task durations) and ``options.prefetch`` tasks. A worker that just started, or
        whose tasks take longer than the budget, claims one at a time.
        """
        limit, avg = self.options.prefetch, self._avg_s
        if limit <= 1 or avg is None or avg >= PREFETCH_BUDGET_S:
            return 1
        return max(1, min(limit, int(PREFETCH_BUDGET_S / max(avg, 1e-6))))

    def _run_batch(self, batch: Sequence[Claimed]) -> None:
        self.state = "busy"
        started = time.perf_counter()
        self.dispatcher.run(batch, self._finished)
        took = (time.perf_counter() - started) / len(batch)
        avg = self._avg_s
        if avg is None:
            self._avg_s = took
        else:  # quick to fall, slow to rise: a busy machine's hiccups do not turn prefetch off
            self._avg_s = avg + (took - avg) * (0.3 if took < avg else 0.05)

    def _finished(self, finish: Finish) -> None:
        """A task's report: kept for the next claim, or sent now if it has waited long enough."""
        now = time.monotonic()
        if not self.pending:
            self._oldest = now
        self.pending.append(finish)
        if now - self._oldest > REPORT_DELAY_S:
            self._send_reports()

    def _idle(self, result: StepResult) -> bool:
        """Nothing to claim: wait for work (True: a burst worker is done)."""
        self.state = "idle"
        if self.options.burst and self._nothing_left():
            log.info("burst: no work left for roles %s; exiting", ",".join(self.link.roles) or "-")
            return True
        try:
            self.dispatcher.warm(self.link.roles)
            if self.link.wait_for_work(result.wait_s if self.link.roles else self.options.idle_wait_s):
                self.dispatcher.woken()
        except Exception as exc:  # noqa: BLE001 - Redis unavailable
            self._disconnected(exc)
            self.backoff.sleep(self.stopping.stop_event)
        if not self.link.roles:
            self.stopping.wait(self.options.idle_wait_s)
        return False

    # --- round trips --------------------------------------------------------------------------
    def _step(self, *, claim: bool, want: int) -> StepResult | None:
        """One round trip: send the pending reports and (unless ``claim=False``) claim.
        None when Redis was unavailable: we backed off, and the same reports go again next time."""
        try:
            if claim and (self.roles_stale.is_set() or not self._roles_loaded):
                self._refresh_roles()
            result = self.link.step(self.pending, claim=claim, want=want)
        except GaveUp:
            raise
        except Exception as exc:  # noqa: BLE001
            if is_out_of_memory(exc):
                self._out_of_memory(exc)
            else:
                if not is_unavailable(exc) and self._down_since is None:  # its traceback once, not every retry
                    log.exception("unexpected error talking to Redis; retrying")
                self._disconnected(exc)
            self._resending = bool(self.pending)
            self.backoff.sleep(self.stopping.stop_event if not self.pending else None)
            return None
        self._reported(result)
        self.backoff.reset()
        self._check_policy()
        return result

    def _check_policy(self) -> None:
        """At start, after every reconnect and every ``options.policy_check_s``: stop claiming (and
        exit once the reports are in) if Redis' maxmemory-policy can delete Symphony's keys."""
        now = time.monotonic()
        if now < self._policy_due or self.refused is not None:
            return
        self._policy_due = now + self.options.policy_check_s
        refusal = eviction_refusal(self.engine, self.options)
        if refusal:
            log.error("%s; this worker stops claiming and exits", refusal)
            self.refused = refusal

    def _send_reports(self) -> None:
        """Send the waiting reports now, without claiming (in the middle of a batch: one try, no backoff)."""
        try:
            result = self.link.step(self.pending, claim=False)
        except Exception as exc:  # noqa: BLE001 - they go with the next claim
            if is_out_of_memory(exc):
                self._out_of_memory(exc)
            else:
                self._disconnected(exc)
            self._resending = True
            return
        self._reported(result)

    def _reported(self, result: StepResult) -> None:
        """Redis has the pending reports: count them, say why any found its task gone."""
        self._connected()
        reports, self.pending = self.pending, []
        resent, self._resending = self._resending, False
        failed: Counter[str] = Counter()
        completed: Counter[str] = Counter()
        for finish, outcome in zip(reports, result.outcomes):
            key = tally_key(outcome)
            if key:
                self.tally[key] += 1
            if outcome == "lost":
                self._log_lost(finish, resent)
            elif finish.failed_on:
                failed[finish.claimed.role] += 1
            elif outcome == OutcomeKind.DONE:
                completed[finish.claimed.role] += 1
        if self.host is not None and (failed or completed):
            self.host.report(failed, completed)

    def _log_lost(self, finish: Finish, resent: bool) -> None:
        c = finish.claimed
        name = logs.task_name(c.role, c.item, c.session)
        try:
            why = self.engine.why_lost(self.link.worker_id, finish, resent=resent)
        except Exception as exc:  # noqa: BLE001 - say what we know
            log.warning("the report of task %s found it gone, and Redis could not say why (%s); its result "
                        "stays on disk", name, describe_error(exc))
            return
        if why.kind == "recorded":
            log.info("the report of task %s was already recorded (its first reply was lost when the connection "
                     "failed)", name)
        elif why.kind == "reclaimed":
            log.warning("task %s was reclaimed from this worker while it ran (%s); its result stays on disk and "
                        "the task runs again", name, why.detail or "its lease lapsed")
        else:
            log.warning("task %s was no longer in this worker's hands and nothing shows it was reclaimed or "
                        "recorded: Redis lost its data, or it was removed; its result stays on disk "
                        "(symphony repair %s restores what is missing)", name, c.session)

    def _refresh_roles(self) -> None:
        self.roles_stale.clear()
        roles = self.engine.roles_for(self.options.pool, self.options.roles or None)
        if list(roles) != list(self.link.roles) or not self._roles_loaded:
            if roles:
                log.info("serving roles: %s", ", ".join(roles))
            elif self.options.pool:
                log.info("no registered session has a stage for pool %r yet; waiting", self.options.pool)
        self.link.serve(roles)
        self._roles_loaded = True

    def _nothing_left(self) -> bool:
        try:
            return self.engine.work_remaining(self.link.roles) == 0
        except Exception as exc:  # noqa: BLE001
            self._disconnected(exc)
            return False

    # --- Redis unavailable --------------------------------------------------------------------
    def _connected(self) -> None:
        if self._down_since is not None:
            log.warning("Redis is back after %.1fs; resuming", time.monotonic() - self._down_since)
            self._down_since = None
            self._policy_due = 0.0  # another server may be answering now: look at its policy again

    # --- Redis out of memory (noeviction at its limit): workers/memory.py ------------------------------
    def _out_of_memory(self, exc: BaseException) -> None:
        self.memory.refused(len(self.pending))

    def _disconnected(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            if _refused(exc):
                log.error("Redis refused a command of this worker's user (%s): its ACL rule does not allow it "
                          "(symphony acl worker prints the rule workers need); retrying with backoff",
                          describe_error(exc))
            else:
                log.warning("Redis unavailable (%s); retrying with backoff", describe_error(exc))
        limit = self.options.give_up_after_s
        if limit is not None and now - self._down_since >= limit:
            raise GaveUp(f"Redis at {self.engine.display} has been unavailable for {now - self._down_since:.0f}s "
                         f"({describe_error(exc)}); giving up")


def _refused(exc: BaseException) -> bool:
    """Whether Redis refused a command for lack of permission (ACL), directly or inside a script."""
    import redis

    text = str(exc)
    return isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("NOPERM") or \
        "can't run this command" in text or "No permissions to access" in text
