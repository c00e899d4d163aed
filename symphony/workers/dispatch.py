"""From a claimed task to its report: prepare it, run its handler, and say how it ended.

* **Prepare**: decode and check the task (a message that is not a task, a session or stage that
  is not registered, task data that fails decryption: each ends failed with the reason and
  runs nothing), work out its paths, skip it if its output exists, make its output's directory.
  An OS error here (the data root cannot be created) is the task's failure with its message.
* **Run**: Python handlers in the executor (a batch of short tasks in one go), commands here,
  one at a time; between tasks a stop request hands the rest back.
* **Conclude**: move the output into place and decide the outcome with the one retry policy
  (``after_failure``).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from symphony.engine import (Claimed, CryptoError, Engine, Finish, Outcome, OutcomeKind, SessionState, Stage,
                             after_failure, describe_error, is_unavailable, is_url, run_here)

from . import logs, runner
from .executor import Executor, PythonCall
from .health import HostState
from .inline import InlineRunner
from .options import WorkerOptions
from .staging import StageError, Staging
from .stopping import Stopping

log = logging.getLogger("symphony.worker")
PLAN_CACHE_MAX = 4096
WARM_SESSIONS = 50  # sessions looked at (once per change of roles) to decide whether to start the executor early
DONE, FAILED, HANDBACK, CANCELLED, TIMED_OUT, RETRY = (OutcomeKind.DONE, OutcomeKind.FAILED, OutcomeKind.HANDBACK,
                                                       OutcomeKind.CANCELLED, OutcomeKind.TIMED_OUT, OutcomeKind.RETRY)


@dataclass(frozen=True)
class StagePlan:
    """What running a task of one stage of one session needs, worked out once per definition."""

    record: Any  # the SessionRecord it was made from (a new definition makes a new plan)
    stage: Stage
    previous: Stage | None  # the stage before (its output is this stage's input)
    next_name: str | None
    params: dict
    shape: tuple[str, str, str, str, str]  # what its tasks share in the executor's frame (executor.PythonCall)

    @classmethod
    def of(cls, record, stage_name: str) -> "StagePlan":
        pipeline = record.pipeline
        stage = pipeline.stage(stage_name)
        index = pipeline.index(stage.name)
        nxt = pipeline.next_stage(stage.name)
        params = record.stage_params(stage.name)
        shape = (stage.handler.target or "", record.name, stage.name, record.root_for(stage.pool),
                 json.dumps(params, separators=(",", ":"), default=str))
        return cls(record, stage, pipeline.stages[index - 1] if index > 0 else None, nxt.name if nxt else None,
                   params, shape)


@dataclass
class Job:
    """A task ready to run."""

    claimed: Claimed
    plan: StagePlan
    attempts: int  # attempts made, this one included
    meta: dict
    input: str | None  # the previous stage's output, or (first stage) the item's own input
    item_input: str | None  # the item's own input (the session's input template, or the item's), at any stage
    final: str | None  # the output's final name
    temp: str | None  # where the handler writes it
    cancelled: bool = False  # its session was cancelled (set by the heart's thread)
    scratch: str | None = None  # its scratch folder, when staged (symphony.workers.staging)
    sealed: bool = False  # its output is sealed at rest (the session's encrypt_outputs)

    def sealed_as(self, stage: Stage | None = None) -> tuple[str, str, str] | None:
        """What the output of ``stage`` (this job's by default) is bound to, when sealed."""
        if not self.sealed:
            return None
        return (self.claimed.session, (stage or self.stage).name, self.claimed.item)

    @property
    def stage(self) -> Stage:
        return self.plan.stage

    @property
    def name(self) -> str:
        c = self.claimed
        return logs.task_name(self.stage.name, c.item, c.session)

    def env(self) -> dict[str, str]:
        """The variables every handler gets."""
        c = self.claimed
        return {"SYMPHONY_SESSION": c.session, "SYMPHONY_STAGE": self.stage.name, "SYMPHONY_ITEM": c.item,
                "SYMPHONY_ATTEMPT": str(self.attempts), "SYMPHONY_ITEM_INPUT": self.item_input or ""}


class Dispatcher:
    def __init__(self, engine: Engine, options: WorkerOptions, executor: Executor, stopping: Stopping,
                 host: HostState | None = None):
        self.engine, self.options, self.executor, self.stopping = engine, options, executor, stopping
        self.host = host  # this host's health (None: not followed)
        self.running: Job | None = None  # read by the heart (cancellation)
        self.completed = 0
        self._plans: dict[tuple[str, str], StagePlan] = {}
        self._stores: dict[int, Any] = {}
        self.staging = Staging(options.scratch_dir, options.scratch_limit_bytes, engine.sealer)
        self._warm_for: tuple[str, ...] | None = None  # the roles the executor's early start was decided for
        self.before_exit: Callable[[], None] = lambda: None  # set by the loop: send the finished tasks' reports
        self.inline = InlineRunner(lambda: self.before_exit())

    def warm(self, roles: Sequence[str]) -> None:
        """While idle: start the executor now if a registered session has a Python stage among
        ``roles`` (run in the executor), and have it import those stages' handlers, so the first
        Python task waits neither for an interpreter nor for its imports (tens of ms each).
        Decided once per set of roles; a worker that only runs commands never starts one."""
        roles = tuple(roles)
        if not roles or self._warm_for == roles or self.executor.pid is not None:
            return
        self._warm_for = roles
        targets: list[str] = []
        for summary in self.engine.sessions()[:WARM_SESSIONS]:
            record = self.engine.records.get(summary.name)
            if record is None:
                continue
            pipeline = record.pipeline
            for role in roles:
                stage = pipeline.stage(role) if pipeline.has_stage(role) else None
                if stage is not None and stage.handler.kind == "python" and stage.isolation != "inline" \
                        and stage.handler.target not in targets:
                    targets.append(stage.handler.target)
        if targets:
            try:
                self.executor.start(targets)
            except OSError as exc:  # the first task reports it
                log.debug("could not start the handler executor early: %s", exc)

    def woken(self) -> None:
        """Woken by a bell: the executor, if its early start was decided for these roles, stays
        awake for the claim's batch."""
        if self._warm_for is not None and self.executor.pid is not None:
            self.executor.expect()

    # --- prepare ------------------------------------------------------------------------------
    def _plan(self, session: str, stage: str):
        """The plan of a registered stage, or None."""
        record = self.engine.records.get(session)
        if record is None or not record.pipeline.has_stage(stage):
            return None
        plan = self._plans.get((session, stage))
        if plan is None or plan.record is not record:
            if len(self._plans) >= PLAN_CACHE_MAX:
                self._plans.clear()
            plan = self._plans[(session, stage)] = StagePlan.of(record, stage)
        return plan

    def prepare(self, claimed: Claimed) -> Job | Finish:
        """A job to run, or (when it must not or need not run) its report already."""
        if claimed.invalid:  # never run: set aside, with the reason, in the dead-letter list
            log.warning("message in queue %s:%s is not a task (%s); moved to the dead-letter list",
                        claimed.role, claimed.session, claimed.invalid)
            return Finish(claimed, Outcome(OutcomeKind.DEADLETTER, error=claimed.invalid), attempts=0)
        task = claimed.task
        attempts = task.attempt + 1
        try:
            plan = self._plan(task.session, task.stage)
        except Exception as exc:  # noqa: BLE001 - Redis unavailable: back to its queue, uncharged
            if not is_unavailable(exc):
                raise
            return Finish(claimed, Outcome(HANDBACK, error=f"Redis unavailable: {describe_error(exc)}"),
                          attempts=attempts)
        if plan is None:
            return Finish(claimed, Outcome(FAILED, error=f"session {task.session} or its stage {task.stage} "
                                                         "is not registered"), attempts=attempts)
        elsewhere = self._elsewhere(task)
        if elsewhere is not None:
            log.info("%s failed on this host last time and other hosts are completing tasks: left to them",
                     logs.task_name(task.stage, task.item, task.session))
            return Finish(claimed, Outcome(RETRY, error="left to another host", delay_s=elsewhere.delay_s),
                          attempts=attempts, charged=False)
        try:
            meta = self.engine.open_task(task)  # decrypted, if task data is encrypted
        except CryptoError as exc:  # wrong key, tampered, or not encrypted as required: never run it
            log.warning("rejected %s: %s", logs.task_name(task.stage, task.item, task.session), exc)
            if exc.this_process:  # this host's key (or lack of one): a retry, another host may open it
                job = Job(claimed, plan, attempts, {}, None, None, None, None)
                return self._failed(job, runner.RunResult(runner.ERROR, error=f"task data rejected: {exc}"))
            return Finish(claimed, Outcome(FAILED, error=f"task data rejected: {exc}"), attempts=attempts)
        record, stage = plan.record, plan.stage
        root = record.root_for(stage.pool)  # where this stage's machines see the data root
        final = stage.output_path(root, task.session, task.item) if stage.output is not None else None
        item_input = record.input_path(task.item, meta)
        if plan.previous is None:
            input_path = item_input
        else:
            input_path = plan.previous.output_path(root, task.session, task.item)
        if Staging.needed(final, input_path, record.encrypt_outputs):
            return self._prepare_staged(claimed, plan, attempts, meta, input_path, item_input, final)
        if final and self.options.skip_existing and os.path.exists(final):
            return Finish(claimed, Outcome(DONE, error="output already existed"), next_stage=plan.next_name,
                          attempts=attempts)
        job = Job(claimed, plan, attempts, meta, input_path, item_input, final,
                  runner.temp_output(final) if final else None)
        error = runner.prepare_output(final) if final else None
        if error:
            return self._failed(job, runner.RunResult(runner.ERROR, error=error))
        return job

    def _prepare_staged(self, claimed: Claimed, plan: StagePlan, attempts: int, meta: dict, input_path: str | None,
                        item_input: str | None, final: str | None) -> Job | Finish:
        """A job whose input and output go through its scratch folder (an object store, or sealed)."""
        job = Job(claimed, plan, attempts, meta, input_path, item_input, final, None,
                  sealed=plan.record.encrypt_outputs)
        try:
            if final and self.options.skip_existing and self.staging.store(final).exists(final):
                return Finish(claimed, Outcome(DONE, error="output already existed"), next_stage=plan.next_name,
                              attempts=attempts)
            job.scratch = self.staging.begin()
            if input_path and plan.previous is not None and plan.previous.output is not None:
                job.input = self.staging.fetch(job.scratch, input_path, job.sealed_as(plan.previous))
            elif input_path and is_url(input_path):
                job.input = self.staging.fetch(job.scratch, input_path, None)
            if final:
                job.temp = self.staging.output(job.scratch, final)
        except (StageError, OSError) as exc:
            return self._failed(job, runner.RunResult(runner.ERROR, error=str(exc)))
        except Exception as exc:  # noqa: BLE001 - the store could not be reached: the task's failure, retried
            return self._failed(job, runner.RunResult(runner.ERROR, error=f"cannot reach the output store: {exc}"))
        return job

    def _elsewhere(self, task):
        """The decision to leave a retry to another host, if its last attempt failed on this one."""
        if self.host is None or not task.failed_on or task.failed_on != self.host.host:
            return None
        return run_here(task.failed_on, self.host.host, self.host.healthy_peers(task.stage))

    # --- run ----------------------------------------------------------------------------------
    def run(self, batch: Sequence[Claimed], on_finish: Callable[[Finish], None]) -> None:
        """Run the tasks of one claim in order; ``on_finish`` gets each report as soon as it is made."""
        jobs: list[Job] = []
        for claimed in batch:
            prepared = self.prepare(claimed)
            if isinstance(prepared, Job):
                jobs.append(prepared)
            else:
                on_finish(prepared)
        i = 0
        while i < len(jobs):
            if self.stopping.requested:
                for job in jobs[i:]:  # never started: back to the head of their queue, as they were
                    self.staging.release(job.scratch)
                    on_finish(Finish(job.claimed, Outcome(HANDBACK, error="worker stopping"), attempts=job.attempts))
                break
            stage = jobs[i].stage
            if stage.handler.kind == "python" and stage.isolation == "inline":
                on_finish(self._run_inline(jobs[i]))
                i += 1
            elif stage.handler.kind == "python":
                end = i
                while end < len(jobs) and jobs[end].stage.handler.kind == "python" \
                        and jobs[end].stage.isolation != "inline":
                    end += 1
                i += self._run_python(jobs[i:end], on_finish)
            else:
                on_finish(self._run_command(jobs[i]))
                i += 1
        self._publish(None)

    def _publish(self, job: Job | None) -> None:
        self.running = job
        if job is None:
            logs.clear_task()
        else:
            c = job.claimed
            logs.set_task(c.session, job.stage.name, c.item, job.attempts)

    def _interrupt(self, job: Job) -> str | None:
        if job.cancelled:
            return str(CANCELLED)
        if self.stopping.handback_due():
            return str(HANDBACK)
        return None

    def _run_python(self, jobs: Sequence[Job], on_finish: Callable[[Finish], None]) -> int:
        calls = [PythonCall(job.plan.shape[0], job.stage.timeout, job.plan.shape,
                            (job.claimed.item, job.attempts, job.input, job.item_input, job.temp, job.final, job.meta))
                 for job in jobs]
        self._publish(jobs[0])

        def done(n: int, result: runner.RunResult) -> None:
            on_finish(self.conclude(jobs[n], result))
            if n + 1 < len(jobs):
                self._publish(jobs[n + 1])

        try:
            return max(1, self.executor.run(calls, on_done=done, interrupt=lambda n: self._interrupt(jobs[n]),
                                            stopping=lambda: self.stopping.requested,
                                            job_store=lambda n: self._store(jobs[n])))
        except OSError as exc:  # the executor could not be started
            done(0, runner.RunResult(runner.ERROR, error=f"cannot start the handler process: {exc}"))
            return 1
        finally:
            self._stores.clear()

    def _run_inline(self, job: Job) -> Finish:
        """A Python handler called in this process (``isolation: inline``; see :mod:`.inline`)."""
        self._publish(job)
        c, stage = job.claimed, job.stage
        result = self.inline.run(stage.handler.target, _context(job), job.env(), stage.timeout,
                                 self.engine.job_store(c.session, stage.name, c.item), job.name)
        return self.conclude(job, result)

    def _store(self, job: Job):
        store = self._stores.get(id(job))
        if store is None:
            c = job.claimed
            store = self._stores[id(job)] = self.engine.job_store(c.session, job.stage.name, c.item)
        return store

    def _run_command(self, job: Job) -> Finish:
        self._publish(job)
        c, stage = job.claimed, job.stage
        values = {**job.plan.params, "session": c.session, "item": c.item, "stage": stage.name, "input": job.input,
                  "output": job.temp, "attempt": job.attempts, "root": job.plan.record.root_for(job.stage.pool),
                  "python": runner.python_executable()}
        result = runner.run_command(stage.handler, values, stage.timeout, lambda: self._interrupt(job), job.env(),
                                    stdout_path=job.temp if stage.handler.stdout_is_output else None)
        return self.conclude(job, result)

    # --- conclude -----------------------------------------------------------------------------
    def conclude(self, job: Job, result: runner.RunResult) -> Finish:
        try:
            return self._conclude(job, result)
        finally:
            self.staging.release(job.scratch)

    def _commit(self, job: Job) -> str | None:
        if not job.final:
            return None
        if job.scratch is None:
            return runner.commit_output(job.temp, job.final)
        try:
            self.staging.commit(job.temp, job.final, job.sealed_as())
        except (StageError, OSError) as exc:
            return str(exc)
        return None

    def _conclude(self, job: Job, result: runner.RunResult) -> Finish:
        if result.status == runner.OK:
            error = self._commit(job)
            if error is None:
                self.completed += 1
                return self._finish(job, result, DONE)
            result = runner.RunResult(runner.ERROR, error=error, stderr=result.stderr, duration_ms=result.duration_ms)
        runner.discard_output(job.temp)
        if result.status == runner.INTERRUPTED:
            kind = CANCELLED if result.reason == str(CANCELLED) else HANDBACK
            log.info("%s %s", job.name, "cancelled" if kind == CANCELLED else "handed back (worker stopping)")
            return self._finish(job, result, kind)
        return self._failed(job, result)

    def _failed(self, job: Job, result: runner.RunResult) -> Finish:
        stage = job.stage
        quarantined = self.host is not None and self.host.quarantined()
        decision = after_failure(stage, job.attempts, timed_out=result.status == runner.TIMEOUT,
                                 host_quarantined=quarantined)
        if decision.retries and not decision.charged:
            log.info("%s failed on a host that is set aside; back to its queue for another host, uncharged: %s",
                     job.name, result.error)
        elif decision.retries:
            log.info("%s failed (attempt %d of %d), retrying in %.1fs: %s", job.name, job.attempts,
                     stage.max_attempts, decision.delay_s, result.error)
        elif decision.kind == TIMED_OUT:
            log.warning("%s timed out: %s", job.name, result.error)
        else:
            log.warning("%s failed after %d attempt(s): %s", job.name, job.attempts, result.error)
        runner.discard_output(job.temp)
        self.staging.release(job.scratch)
        return self._finish(job, result, decision.kind, decision.delay_s,
                            failed_on=self.host.host if self.host is not None else "", charged=decision.charged)

    def _finish(self, job: Job, result: runner.RunResult, kind, delay: float = 0.0, *, failed_on: str = "",
                charged: bool = True) -> Finish:
        return Finish(job.claimed, Outcome(kind, error=result.error if kind != DONE else "", stderr=result.stderr,
                                           duration_ms=result.duration_ms, delay_s=delay),
                      next_stage=job.plan.next_name, attempts=job.attempts, failed_on=failed_on, charged=charged)

    # --- cancellation (from the heart) -----------------------------------------------------------
    def check_cancelled(self) -> None:
        """The registry changed: if the running task's session was cancelled, stop the task."""
        job = self.running
        if job is None:
            return
        _, state = self.engine.session(job.claimed.session)
        if state == SessionState.CANCELLED:
            job.cancelled = True


def _context(job: Job) -> dict[str, Any]:
    """The JobContext fields of ``job`` (all but kv and log, which the executor makes)."""
    c = job.claimed
    return {"session": c.session, "stage": job.stage.name, "item": c.item, "attempt": job.attempts,
            "input": job.input, "item_input": job.item_input, "output": job.temp, "final_output": job.final,
            "root": job.plan.record.root_for(job.stage.pool),
            "params": dict(job.plan.params), "meta": job.meta}


TALLY = {OutcomeKind.DONE: "done", OutcomeKind.RETRY: "retried", OutcomeKind.FAILED: "failed",
         OutcomeKind.TIMED_OUT: "timed_out", OutcomeKind.CANCELLED: "cancelled", OutcomeKind.HANDBACK: "handed_back",
         OutcomeKind.DEADLETTER: "dead_lettered",
         "lost": "lost"}


def tally_key(outcome: str) -> str | None:
    """Which summary count a recorded outcome (as Redis answered: its value, or 'lost') adds to."""
    return TALLY.get(str(outcome))

