"""One worker process: claim a task, run its handler, report, repeat.

A second thread beats the heartbeat (renewing the leases on held tasks), reaps the leases of
dead workers, follows registry changes, and acts as the watchdog for Python handlers that
overrun their timeout (a callable cannot be interrupted, so the watchdog records the timeout
and ends the process; the supervisor starts a fresh one).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from symphony.engine import (Backoff, Claimed, CryptoError, Engine, Finish, Outcome, OutcomeKind, RedisConfig,
                             SessionState, Stage, StepResult, after_failure, describe_error, is_unavailable,
                             sealer_from)

from . import runner
from .batchjob import BatchJob
from .context import JobContext
from .hostinfo import HostSampler
from .options import WorkerOptions, set_from_signal_handler

log = logging.getLogger("symphony.worker")
EXIT_OK, EXIT_WATCHDOG = 0, 3
PREFETCH_BUDGET_S = 0.005  # claim several tasks at once only while they take less than this, together
REPORT_DELAY_S = 0.02  # a finished task's report waits at most this long for the next claim


@dataclass
class Current:
    """The task being run, shared between the main thread and the watchdog."""

    claimed: Claimed
    kind: str  # python | command
    started: float
    deadline: float  # monotonic
    attempts: int
    next_stage: str | None
    stage: Stage
    temp_output: str | None = None
    settled: bool = False
    interrupt: str | None = None  # cancelled | handback
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class StagePlan:
    """What running a task of one stage of one session needs, worked out once per definition."""

    record: object  # the SessionRecord it was made from (a new definition makes a new plan)
    stage: object
    previous: object | None  # the stage before (its output is this stage's input)
    next_name: str | None
    params: dict

    @classmethod
    def of(cls, record, stage_name: str) -> "StagePlan":
        pipeline = record.pipeline
        stage = pipeline.stage(stage_name)
        index = pipeline.index(stage.name)
        nxt = pipeline.next_stage(stage.name)
        return cls(record, stage, pipeline.stages[index - 1] if index > 0 else None, nxt.name if nxt else None,
                   record.stage_params(stage.name))


class WorkerProcess:
    def __init__(self, options: WorkerOptions, worker_id: str, *, stop_event=None, urgent_event=None,
                 supervisor: str = ""):
        self.options = options
        self.worker_id = worker_id
        self.stop_event = stop_event or threading.Event()
        self.urgent_event = urgent_event or threading.Event()
        self.supervisor = supervisor
        config = RedisConfig(url=options.redis_url, password=options.redis_password, username=options.redis_username,
                             ca_file=options.redis_ca_file, explicit=True, client_name=f"symphony-worker:{worker_id}")
        self.engine = Engine(config, socket_timeout=max(10.0, options.idle_wait_s + 5),
                             sealer=sealer_from(options.encryption_key), origin=BatchJob.from_env().origin())
        self.link = self.engine.worker_link(worker_id, [], idle_wait_s=options.idle_wait_s)
        self.sampler = HostSampler()
        self.host_metrics = self.engine.host_metrics_writer(options.pool, self.sampler.host,
                                                            interval_s=options.metrics_interval_s)
        self.current: Current | None = None
        self.completed = 0
        self.state = "starting"
        self.exit = threading.Event()
        self.wake = threading.Event()
        self.epoch: str | None = None
        self.stop_requested_at: float | None = None
        self._down_since: float | None = None
        self._hb_down_since: float | None = None
        self._roles_lock = threading.Lock()
        self._roles_loaded = False  # set once the roles were read (not when an epoch was merely seen)
        self._resending = False  # the reports being sent are a retry after a failed attempt
        self._avg_s: float | None = None  # running average of task durations (decides prefetch)
        self._heart_wakes_at = 0.0  # when the heartbeat/watchdog thread looks next (monotonic)
        self._plans: dict[tuple[str, str], StagePlan] = {}

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def run(self) -> int:
        if hasattr(signal, "SIGINT"):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, lambda *_: set_from_signal_handler(self.stop_event))
        heart = threading.Thread(target=self._heart, name="heartbeat", daemon=True)
        heart.start()
        try:
            code = self._loop()
        finally:
            self.exit.set()
            self.wake.set()
            heart.join(timeout=5)
            self._retire()
        return code

    def _retire(self) -> None:
        try:
            if not self.link.in_flight():
                self.link.retire()
        except Exception as exc:  # Redis gone at exit: the lease will lapse and be reaped
            log.debug("could not retire cleanly: %s", describe_error(exc))

    # --- main loop --------------------------------------------------------------------------
    def _want(self) -> int:
        """How many tasks to claim at once: one, unless this worker's tasks are short (prefetch).

        A claimed task sits in this worker's in-flight list until it is reported, so prefetch is
        bounded by time: at most about ``PREFETCH_BUDGET_S`` of work (by the running average of
        recent task durations) and ``options.prefetch`` tasks. A worker that just started, or
        whose tasks take longer than the budget, claims one at a time.
        """
        limit = self.options.prefetch
        avg = self._avg_s
        if limit <= 1 or avg is None or avg >= PREFETCH_BUDGET_S:
            return 1
        return max(1, min(limit, int(PREFETCH_BUDGET_S / max(avg, 1e-6))))

    def _loop(self) -> int:
        backoff = Backoff()
        pending: list[Finish] = []  # finished, not yet reported (sent with the next claim)
        buffer: deque[Claimed] = deque()  # claimed, not yet started (prefetch), in in-flight order
        oldest = 0.0  # when the oldest pending report was made
        empty_streak = 0
        while True:
            if buffer and not self.stopping:
                if pending and time.monotonic() - oldest > REPORT_DELAY_S:
                    buffer_ok = self._report(pending, backoff)
                    if buffer_ok:
                        pending = []
                    continue
                claimed = buffer.popleft()
                started = time.perf_counter()
                fin = self._run(claimed)
                took = time.perf_counter() - started
                self._avg_s = took if self._avg_s is None else self._avg_s + (took - self._avg_s) * 0.2
                if not pending:
                    oldest = time.monotonic()
                pending.append(fin)
                continue
            if self.stopping:
                while buffer:  # prefetched and never started: back to the head of their queue, as they were
                    c = buffer.pop()
                    pending.append(Finish(c, Outcome(OutcomeKind.HANDBACK, error="worker stopping"),
                                          attempts=(c.task.attempt + 1) if c.task else 1))
                if not pending:
                    return EXIT_OK
            result = self._step(pending, backoff, claim=not self.stopping, want=self._want())
            if result is None:
                continue
            pending = []
            if result.batch:
                empty_streak = 0
                buffer.extend(result.batch)
                continue
            if self.stopping:
                continue
            if result.eligible and empty_streak < 16:
                empty_streak += 1
                continue
            empty_streak = 0
            self.state = "idle"
            if self.options.burst and self._nothing_left():
                log.info("burst: no work left for roles %s; exiting", ",".join(self.link.roles) or "-")
                return EXIT_OK
            try:
                self.link.wait_for_work(result.wait_s if self.link.roles else self.options.idle_wait_s)
            except Exception as exc:
                self._disconnected(exc)
                backoff.sleep(self.stop_event)
            if not self.link.roles:
                self.stop_event.wait(self.options.idle_wait_s)

    def _report_was_recorded(self, finish: Finish) -> bool:
        """After a resent report found its task gone: did the first attempt record it (the item
        moved on), or was the lease reclaimed meanwhile (the item is back at this stage)?"""
        claimed = finish.claimed
        if claimed.task is None:
            return True
        try:
            return self.engine.item_stage(claimed.session, claimed.item) != claimed.role
        except Exception:
            return False

    def _log_lost(self, reports: list[Finish], outcomes: tuple[str, ...]) -> None:
        """Say why a report found its task gone: its lease was reclaimed, or (when it was sent
        again after a failed attempt) its first attempt was recorded and only the reply was lost."""
        resent, self._resending = self._resending, False
        for fin, outcome in zip(reports, outcomes):
            if outcome != "lost":
                continue
            if resent and self._report_was_recorded(fin):
                log.info("the report of task %s was already recorded (its first reply was lost when the "
                         "connection failed)", fin.claimed.raw)
            else:
                log.warning("task %s was reclaimed by another process while we ran it (our lease lapsed); "
                            "its result stays on disk and the task runs again", fin.claimed.raw)

    def _step(self, pending: list[Finish], backoff: Backoff, **kwargs) -> StepResult | None:
        """One round trip: send the reports in ``pending`` and (unless ``claim=False``) claim.
        None when Redis was unavailable: we backed off, and the same reports go again next time."""
        try:
            if not self._roles_loaded:
                self._refresh_roles()
            result = self.link.step(pending, **kwargs)
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("unexpected error talking to Redis; retrying")
            self._disconnected(exc)
            self._resending = bool(pending)
            backoff.sleep(self.stop_event if not pending else None)
            return None
        self._connected()
        backoff.reset()
        self._log_lost(pending, result.outcomes)
        return result

    def _report(self, pending: list[Finish], backoff: Backoff) -> bool:
        """Send the reports waiting for the next claim now (the next task may take long)."""
        return self._step(pending, backoff, claim=False) is not None

    def _nothing_left(self) -> bool:
        try:
            return self.engine.work_remaining(self.link.roles) == 0
        except Exception as exc:
            self._disconnected(exc)
            return False

    def _refresh_roles(self) -> None:
        with self._roles_lock:
            self._refresh_roles_locked()

    def _refresh_roles_locked(self) -> None:
        roles = self.engine.roles_for(self.options.pool, self.options.roles or None)
        if list(roles) != list(self.link.roles):
            if roles:
                log.info("serving roles: %s", ", ".join(roles))
            elif self.options.pool:
                log.info("no registered session has a stage for pool %r yet; waiting", self.options.pool)
            self.link.roles = list(roles)
            self.link.hint = None
        self._roles_loaded = True
        if self.epoch is None:
            self.epoch = ""

    def _connected(self) -> None:
        if self._down_since is not None:
            log.warning("Redis is back after %.1fs; resuming", time.monotonic() - self._down_since)
            self._down_since = None

    def _disconnected(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("Redis unavailable (%s); retrying with backoff", describe_error(exc))

    # --- running a task ---------------------------------------------------------------------
    def _run(self, claimed: Claimed) -> Finish:
        self.state = "busy"
        if claimed.invalid:
            log.warning("invalid message in %s:%s: %s", claimed.role, claimed.session, claimed.invalid)
            return Finish(claimed, Outcome(OutcomeKind.FAILED, error=f"invalid task message: {claimed.invalid}"),
                          attempts=1)
        task = claimed.task
        record = self.engine.records.get(task.session)
        if record is None or not record.pipeline.has_stage(task.stage):
            return Finish(claimed, Outcome(OutcomeKind.FAILED, error=f"session {task.session} or its stage "
                                                                     f"{task.stage} is not registered"),
                          attempts=task.attempt + 1)
        plan = self._plans.get((task.session, task.stage))
        if plan is None or plan.record is not record:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = self._plans[(task.session, task.stage)] = StagePlan.of(record, task.stage)
        stage, previous, next_name = plan.stage, plan.previous, plan.next_name
        attempts = task.attempt + 1
        try:
            meta = self.engine.open_task(task)  # decrypted, if task data is encrypted
        except CryptoError as exc:  # wrong key, tampered, or not encrypted as required: never run it
            log.warning("rejected %s:%s@%s: %s", task.stage, task.item, task.session, exc)
            return Finish(claimed, Outcome(OutcomeKind.FAILED, error=f"task data rejected: {exc}"), attempts=attempts)
        final = stage.output_path(record.root, task.session, task.item) if stage.output is not None else None
        if previous is None:
            input_path = record.input_path(task.item, meta)
        else:
            input_path = previous.output_path(record.root, task.session, task.item)
        if final and self.options.skip_existing and os.path.exists(final):
            return Finish(claimed, Outcome(OutcomeKind.DONE, error="output already existed"), next_stage=next_name,
                          attempts=attempts)
        temp = runner.temp_output(final) if final else None
        if final:
            os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
        now = time.monotonic()
        current = Current(claimed=claimed, kind=stage.handler.kind, started=now, deadline=now + stage.timeout,
                          attempts=attempts, next_stage=next_name, stage=stage, temp_output=temp)
        self.current = current
        if current.deadline < self._heart_wakes_at:  # the watchdog must look sooner than it planned
            self.wake.set()
        params = dict(plan.params)  # the handler's own copy
        try:
            if stage.handler.kind == "python":
                ctx = JobContext(session=task.session, stage=stage.name, item=task.item, attempt=attempts,
                                 input=input_path, output=temp, final_output=final, root=record.root, params=params,
                                 meta=meta,
                                 kv=self.engine.job_store(task.session, stage.name, task.item))
                result = runner.run_python(stage.handler.target, ctx)
            else:
                values = {**params, "session": task.session, "item": task.item, "stage": stage.name,
                          "input": input_path, "output": temp, "attempt": attempts, "root": record.root,
                          "python": runner.python_executable()}
                env = {"SYMPHONY_SESSION": task.session, "SYMPHONY_STAGE": stage.name, "SYMPHONY_ITEM": task.item,
                       "SYMPHONY_ATTEMPT": str(attempts)}
                result = runner.run_command(stage.handler, values, stage.timeout, lambda: current.interrupt, env)
        finally:
            with current.lock:
                settled_by_watchdog = current.settled
                current.settled = True
            self.current = None
        if settled_by_watchdog:  # the watchdog already reported it and is ending this process
            time.sleep(3600)
        return self._outcome(claimed, current, result, final, temp, stage)

    def _outcome(self, claimed: Claimed, current: Current, result: runner.RunResult, final: str | None,
                 temp: str | None, stage) -> Finish:
        def finish(kind: str, error: str = "", delay: float = 0.0) -> Finish:
            return Finish(claimed, Outcome(kind, error=error, stderr=result.stderr, duration_ms=result.duration_ms,
                                           delay_s=delay), next_stage=current.next_stage, attempts=current.attempts)

        if result.status == runner.OK:
            error = runner.commit_output(temp, final) if final else None
            if error is None:
                self.completed += 1
                return finish(OutcomeKind.DONE)
            result = runner.RunResult(runner.ERROR, error=error, stderr=result.stderr, duration_ms=result.duration_ms)
        runner.discard_output(temp)
        if result.status == runner.INTERRUPTED:
            cancelled = result.reason == OutcomeKind.CANCELLED
            return finish(OutcomeKind.CANCELLED if cancelled else OutcomeKind.HANDBACK, result.error)
        decision = after_failure(stage, current.attempts, timed_out=result.status == runner.TIMEOUT)
        if decision.retries:
            log.info("%s failed (attempt %d of %d), retrying in %.1fs: %s", claimed.raw, current.attempts,
                     stage.max_attempts, decision.delay_s, result.error)
        elif decision.kind == OutcomeKind.TIMED_OUT:
            log.warning("%s timed out: %s", claimed.raw, result.error)
        else:
            log.warning("%s failed after %d attempt(s): %s", claimed.raw, current.attempts, result.error)
        return finish(decision.kind, result.error, decision.delay_s)

    # --- heartbeat, reaper and watchdog thread ------------------------------------------------
    def _info(self) -> dict[str, object]:
        current = self.current
        state = "stopping" if self.stopping else self.state
        info: dict[str, object] = {"name": self.options.name or self.worker_id, "host": self.sampler.host,
                                   "pid": os.getpid(), "pool": self.options.pool or "",
                                   "roles": ",".join(self.link.roles), "state": state, "done": self.completed,
                                   "started": round(self.sampler.started, 3), "supervisor": self.supervisor}
        # the task being run (a beat between a claim and the task's start must not leave it blank)
        info["current"] = current.claimed.raw if current is not None else ""
        info.update(self.sampler.sample())
        return info

    def _heart(self) -> None:
        options = self.options
        known_before = False
        next_beat = 0.0
        next_check: float | None = None
        while not self.exit.is_set():
            now = time.monotonic()
            if now >= next_beat:
                try:
                    info = self._info()
                    beat = self.link.beat(options.heartbeat_s, options.lease_s, info)
                    self._record_host(beat.now_ms, info)
                    if self._hb_down_since is not None:
                        self._hb_down_since = None
                    lost_registration = known_before and not beat.known
                    if lost_registration:
                        log.warning("Redis no longer knew this worker: its lease lapsed and its tasks were "
                                    "reclaimed, or Redis lost its data; reading the registry again")
                    known_before = True
                    # after Redis lost its data the epoch starts again and may look unchanged
                    if beat.epoch != self.epoch or lost_registration:
                        self.engine.records.observe_epoch("")
                        self.epoch = beat.epoch
                        self.engine.records.observe_epoch(beat.epoch)
                        self._refresh_roles()
                        self._check_cancelled()
                    if beat.lapsed:
                        self.engine.reap(beat.lapsed, lock_ttl_s=max(5.0, options.lease_s))
                    next_check = None
                    if beat.earliest_expiry_ms is not None:
                        until = (beat.earliest_expiry_ms - beat.now_ms) / 1000 + 0.05
                        if 0 < until < options.heartbeat_s:
                            next_check = time.monotonic() + until
                except Exception as exc:
                    if self._hb_down_since is None:
                        self._hb_down_since = time.monotonic()
                        log.debug("heartbeat failed: %s", describe_error(exc))
                # fixed rate: time spent reaping or waiting for Redis does not push the next beat back
                # (a silence of more than half a lease would look like an outage to everyone)
                next_beat = now + options.heartbeat_s
            elif next_check is not None and now >= next_check:
                next_check = None
                try:
                    self.engine.reap(None, lock_ttl_s=max(5.0, options.lease_s))
                except Exception as exc:
                    log.debug("reap failed: %s", describe_error(exc))
            self._watchdog()
            wait = next_beat - time.monotonic()
            if next_check is not None:
                wait = min(wait, next_check - time.monotonic())
            # published before reading ``current``: a task started from here on either is seen
            # below or compares its deadline with this (and wakes us only if it is earlier)
            self._heart_wakes_at = time.monotonic() + max(0.01, wait)
            current = self.current
            if current is not None:
                wait = min(wait, current.deadline - time.monotonic() + 0.01)
            if self.stopping:
                wait = min(wait, 0.1)
            self._heart_wakes_at = time.monotonic() + max(0.01, wait)
            self.wake.wait(max(0.01, wait))
            self.wake.clear()

    def _record_host(self, now_ms: int, info: dict[str, object]) -> None:
        """The host's sample for the console's history: one call per time bucket at most, and
        Redis keeps one sample per host per bucket however many of its processes offer one."""
        try:
            self.host_metrics.offer(now_ms, info)
        except Exception as exc:  # metrics must never disturb the heartbeat
            log.debug("could not record host metrics: %s", describe_error(exc))

    def _check_cancelled(self) -> None:
        current = self.current
        if current is None or current.claimed.task is None:
            return
        try:
            _, state = self.engine.session(current.claimed.session)
        except Exception:
            return
        if state == SessionState.CANCELLED:
            current.interrupt = OutcomeKind.CANCELLED

    def _watchdog(self) -> None:
        current = self.current
        if current is None:
            return
        now = time.monotonic()
        if self.stopping and current.interrupt is None:
            if self.stop_requested_at is None:
                self.stop_requested_at = now
            if self.urgent_event.is_set() or now - self.stop_requested_at >= self.options.drain_timeout_s:
                current.interrupt = OutcomeKind.HANDBACK
        if current.kind != "python":
            return  # command handlers are timed and interrupted by the main thread
        reason = None
        if now >= current.deadline:
            reason = OutcomeKind.TIMED_OUT
        elif current.interrupt is not None:
            reason = current.interrupt
        if reason is None:
            return
        with current.lock:
            if current.settled:
                return
            current.settled = True
        stage_timeout = current.deadline - current.started
        if reason == OutcomeKind.TIMED_OUT:
            decision = after_failure(current.stage, current.attempts, timed_out=True)
            outcome = Outcome(decision.kind, error=f"timed out after {stage_timeout:g}s", delay_s=decision.delay_s,
                              duration_ms=int((now - current.started) * 1000))
        elif reason == OutcomeKind.CANCELLED:
            outcome = Outcome(OutcomeKind.CANCELLED, error="session cancelled")
        else:
            outcome = Outcome(OutcomeKind.HANDBACK, error="worker stopping")
        fin = Finish(current.claimed, outcome, next_stage=current.next_stage, attempts=current.attempts)
        log.warning("%s: %s; this process ends and the supervisor starts a fresh one", current.claimed.raw,
                    outcome.error)
        runner.discard_output(current.temp_output)
        reporter = self.engine.worker_link(self.worker_id, [])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                reporter.step(fin, claim=False)
                break
            except Exception as exc:
                log.debug("watchdog could not report yet: %s", describe_error(exc))
                time.sleep(0.5)
        os._exit(EXIT_WATCHDOG if reason == OutcomeKind.TIMED_OUT else EXIT_OK)


def child_main(options: WorkerOptions, worker_id: str, stop_event, urgent_event, supervisor: str) -> None:
    """Entry point of a spawned worker process."""
    from symphony.engine import redact_standard_streams

    from .logs import setup_logging

    redact_standard_streams()  # what handlers print is masked like the log
    setup_logging(options.log_level, worker_id, options.log_format)
    # the options carry what this process needs; handlers running in it never see the secrets
    for var in runner.SECRET_ENV + ("REDIS_PASSWORD_FILE", "SYMPHONY_REDIS_PASSWORD_FILE", "SYMPHONY_KEY_FILE"):
        os.environ.pop(var, None)
    if options.nice:
        from .priority import lower_priority

        lower_priority(options.nice)
    code = WorkerProcess(options, worker_id, stop_event=stop_event, urgent_event=urgent_event,
                         supervisor=supervisor).run()
    raise SystemExit(code)
