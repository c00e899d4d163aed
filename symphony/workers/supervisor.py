"""The supervisor: N worker processes, restarted when they crash, stopped cleanly.

It restarts a crashed child at once, reclaiming the child's in-flight tasks without waiting for
its lease to lapse; backs off when a child keeps crashing; and on SIGTERM or Ctrl-C asks every
child to finish its current task (or hand it back after ``--drain-timeout``; a second Ctrl-C
hands back at once). In burst mode it exits when every child found no work left, with a summary.

Children are forked on Linux (a new worker is ready in milliseconds, not after importing
everything again) and spawned elsewhere (Windows VMs, macOS). Before any child starts, the
secret variables are gone from the environment and the command line seen by the children (the
options carry what they need), so no handler inherits them.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from symphony.engine import Backoff, ConfigError, CredentialsRefused, Engine, RedisUnavailable, is_unavailable

from .batchjob import BatchJob
from .inline import EXIT_OVERRAN
from .loop import EXIT_DRAINED, EXIT_GAVE_UP, EXIT_OK, EXIT_REFUSED, eviction_refusal
from .options import WorkerOptions
from .process import child_main, summary_line
from .scheduled_events import ScheduledEventsWatcher
from .stopping import set_from_signal_handler

log = logging.getLogger("symphony.supervisor")
CRASH_WINDOW_S = 60.0
MAX_RESTART_DELAY_S = 60.0
EXIT_UNAVAILABLE = 2  # the supervisor's exit status when Redis refused it or never answered
STOP_GRACE_S = 15.0  # beyond the drain timeout, before a child that does not stop is killed


def start_method(*, secret_on_command_line: bool = False) -> str:
    """Fork on Linux; spawn elsewhere, and wherever a secret was on the command line (a forked
    child would show it in ``ps`` again, a spawned one has a command line of its own)."""
    return "fork" if sys.platform.startswith("linux") and not secret_on_command_line else "spawn"


@dataclass
class Slot:
    index: int
    process: mp.process.BaseProcess | None = None
    worker_id: str = ""
    crashes: list[float] = field(default_factory=list)
    restart_at: float = 0.0
    finished: bool = False


class Supervisor:
    def __init__(self, options: WorkerOptions, *, secret_on_command_line: bool = False):
        self.options = options
        self.ctx = mp.get_context(start_method(secret_on_command_line=secret_on_command_line))
        self.stop_event = self.ctx.Event()
        self.urgent_event = self.ctx.Event()
        self.summaries = self.ctx.SimpleQueue()
        host = socket.gethostname().split(".")[0] or "host"
        self.base = options.name or host
        self.supervisor_id = f"{self.base}-{os.getpid()}"
        self.slots = [Slot(i) for i in range(options.processes)]
        self.to_reclaim: list[tuple[str, str]] = []
        give_up = options.give_up_after_s
        config = options.redis.with_client_name(f"symphony-supervisor:{self.supervisor_id}")
        self.engine = Engine(config, socket_timeout=min(10.0, give_up) if give_up else 10.0)
        self.signals = 0
        self.gave_up = False
        self.refused = False  # a worker stopped because Redis' maxmemory-policy can evict Symphony's keys
        self.batch = BatchJob.from_env()  # the SLURM job we run in, if any: its time limit (batchjob.py)
        self.scheduled = ScheduledEventsWatcher(options.scheduled_events_url) if options.scheduled_events_url else None
        self._handback_at: float | None = None  # epoch seconds: a Scheduled Event's hand-back time

    # --- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        if self.batch.in_job and signum == getattr(signal, "SIGTERM", None):
            self.batch.terminated()  # SLURM ends the job: SIGKILL follows after its KillWait
        self.signals += 1
        if self.signals == 1:
            log.info("stopping: children finish their current task (up to %.0fs), then exit; "
                     "press Ctrl-C again to hand tasks back now", self.options.drain_timeout_s)
            set_from_signal_handler(self.stop_event)
        else:
            log.info("handing back current tasks now")
            set_from_signal_handler(self.urgent_event)

    def _on_time_warning(self, _signum, _frame) -> None:
        self.batch.warned()  # acted on by _watch_walltime in the main loop

    def _install_signals(self) -> None:
        for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._on_signal)
        if hasattr(signal, "SIGUSR1"):  # SLURM's warning before the time limit (#SBATCH --signal=B:USR1@...)
            signal.signal(signal.SIGUSR1, self._on_time_warning)

    def _watch_walltime(self) -> None:
        """Near the SLURM job's end: stop claiming, then hand running tasks back in time."""
        stop, handback = self.batch.due()
        if stop and not self.stop_event.is_set():
            left = self.batch.handback_at - time.time() if self.batch.handback_at else 0.0
            log.warning("SLURM job %s: time limit near; no new tasks, running tasks have %.0fs to finish "
                        "before they go back to their queue", self.batch.tracked_id, max(0.0, left))
            self.stop_event.set()
        if handback and not self.urgent_event.is_set():
            log.warning("SLURM job %s: handing running tasks back to their queue before the job ends",
                        self.batch.tracked_id)
            self.stop_event.set()
            self.urgent_event.set()

    def _watch_scheduled_events(self) -> None:
        """Azure takes this VM away: stop claiming, then hand running tasks back before it does."""
        watcher = self.scheduled
        if watcher is None or watcher.event is None:
            return
        event = watcher.event
        if self._handback_at is None:
            self._handback_at = watcher.handback_at(self.options.drain_timeout_s)
            left = f"{event.not_before - time.time():.0f}s" if event.not_before is not None else "any moment"
            log.warning("Azure Scheduled Event %s: %s of this VM in %s; no new tasks, running tasks have %.0fs to "
                        "finish before they go back to their queue", event.id, event.type, left,
                        max(0.0, self._handback_at - time.time()))
            self.stop_event.set()
        if time.time() >= self._handback_at and not self.urgent_event.is_set():
            log.warning("Azure Scheduled Event %s: handing running tasks back to their queue before the %s",
                        event.id, event.type)
            self.urgent_event.set()

    def _kill_deadline(self) -> float:
        """When children that have not stopped are killed (monotonic): after the drain window and
        a grace, but before a Scheduled Event may start."""
        deadline = time.monotonic() + self.options.drain_timeout_s + STOP_GRACE_S
        event = self.scheduled.event if self.scheduled is not None else None
        if event is not None and event.not_before is not None:
            deadline = min(deadline, time.monotonic() + event.not_before - time.time() - 3.0)
        return deadline

    # --- children ---------------------------------------------------------------------------
    def _hang_up(self) -> None:
        """Close the supervisor's connection until it next needs Redis (a crashed child's reclaim):
        a fleet holds one connection per worker process, none per supervisor. Before every fork
        too: a child would otherwise inherit the socket and keep the connection open."""
        client = self.engine.client
        try:
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()
            elif hasattr(client, "disconnect_connection_pools"):  # a cluster client
                client.disconnect_connection_pools()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.debug("could not close the supervisor's connection: %s", exc)

    def _start(self, slot: Slot) -> None:
        self._hang_up()
        slot.worker_id = f"{self.base}-{slot.index}-{uuid.uuid4().hex[:6]}"
        slot.process = self.ctx.Process(target=child_main, name=f"symphony-worker-{slot.index}",
                                        args=(self.options, slot.worker_id, self.stop_event, self.urgent_event,
                                              self.supervisor_id, self.summaries), daemon=False)
        slot.process.start()
        log.debug("started worker %s (pid %s)", slot.worker_id, slot.process.pid)

    def _reclaim(self, worker_id: str, reason: str) -> bool:
        try:
            report = self.engine.reclaim_worker(worker_id, force=True, reason=reason,
                                                stopped="while the workers were stopping" in reason)
        except Exception as exc:  # noqa: BLE001
            if not is_unavailable(exc):
                log.exception("reclaiming %s failed", worker_id)
            return False
        if report.tasks:
            log.warning("gave back %d task(s) of %s (%s)", report.tasks, worker_id, reason)
        return True

    def _reap_children(self) -> None:
        for slot in self.slots:
            proc = slot.process
            if proc is None or proc.is_alive():
                continue
            code = proc.exitcode
            proc.join(timeout=0)
            slot.process = None
            self._child_ended(slot, proc.pid, code)

    def _child_ended(self, slot: Slot, pid: int | None, code: int | None) -> None:
        clean = code in (EXIT_OK, EXIT_GAVE_UP, EXIT_DRAINED, EXIT_REFUSED)
        if not clean:
            self._ended_unclean(slot, pid, code)
        elif code == EXIT_REFUSED:
            self._refused(slot)
        elif code == EXIT_GAVE_UP:
            self.gave_up = True
            self.to_reclaim.append((slot.worker_id, f"process {pid} gave up waiting for Redis"))
        if code == EXIT_DRAINED:
            log.info("worker %s was drained and exited; not restarting it", slot.worker_id)
        if self.stop_event.is_set() or code == EXIT_DRAINED or (self.options.burst and clean):
            slot.finished = True
            return
        now = time.monotonic()
        if not clean:
            slot.crashes = [t for t in slot.crashes if now - t < CRASH_WINDOW_S] + [now]
        delay = 0.0 if len(slot.crashes) <= 2 else min(MAX_RESTART_DELAY_S, 2.0 ** (len(slot.crashes) - 2))
        if delay:
            log.warning("worker slot %d keeps crashing (%d times in %.0fs); restarting in %.0fs",
                        slot.index, len(slot.crashes), CRASH_WINDOW_S, delay)
        slot.restart_at = now + delay

    def _ended_unclean(self, slot: Slot, pid: int | None, code: int | None) -> None:
        """A child that did not exit on its own: its tasks go back now, not when its lease lapses."""
        stopped = (code is not None and code < 0 and self.stop_event.is_set()
                   and _signal_name(-code) in ("SIGTERM", "SIGINT"))
        if stopped:
            # the stop signal reached it before it could stop on its own (it was starting): not a loss
            reason = f"process {pid} ended by {_signal_name(-code)} while the workers were stopping"
            log.info("worker %s stopped (%s)", slot.worker_id, reason)
        else:  # it crashed (or was killed)
            reason = _exit_reason(pid, code)
            log.warning("worker %s died (%s)", slot.worker_id, reason)
        self.to_reclaim.append((slot.worker_id, reason))

    def _refused(self, slot: Slot) -> None:
        """Redis' policy changed to one that evicts Symphony's keys: every worker stops, none restarts."""
        if not self.refused:
            log.error("worker %s stopped: Redis' maxmemory-policy can delete Symphony's keys (its log says "
                      "which and what to set); stopping every worker, not restarting them", slot.worker_id)
        self.refused = True
        self.stop_event.set()

    def _restart_due(self) -> None:
        if self.stop_event.is_set():
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None and not slot.finished and now >= slot.restart_at:
                self._start(slot)

    def _flush_reclaims(self) -> None:
        pending, self.to_reclaim = self.to_reclaim, []
        for worker_id, reason in pending:
            if not self._reclaim(worker_id, reason):
                self.to_reclaim.append((worker_id, reason))
        if pending and not self.to_reclaim:
            self._hang_up()

    # --- Redis --------------------------------------------------------------------------------
    def _wait_for_redis(self) -> bool:
        """True once Redis answers; False if stopped first. Raises when waiting will not help:
        refused credentials, a bad configuration, or (burst) Redis unavailable for too long."""
        backoff = Backoff(initial=0.5, maximum=10.0)
        give_up = self.options.give_up_after_s
        began = time.monotonic()
        announced = False
        while not self.stop_event.is_set():
            try:
                self.engine.ping()
                if announced:
                    log.info("Redis at %s is reachable", self.engine.display)
                return True
            except CredentialsRefused:
                raise
            except RedisUnavailable as exc:
                if give_up is not None and time.monotonic() - began + backoff.initial >= give_up:
                    raise RedisUnavailable(f"{exc}; gave up after {time.monotonic() - began:.0f}s") from None
                if not announced:
                    log.warning("%s; waiting for it%s", exc,
                                f" (giving up after {give_up:.0f}s)" if give_up is not None else "")
                    announced = True
            delay = backoff.next_delay()
            if give_up is not None:
                delay = max(0.05, min(delay, give_up - (time.monotonic() - began)))
            self.stop_event.wait(delay)
        return False

    # --- the supervision loop -------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        started = time.monotonic()
        try:
            if not self._wait_for_redis():
                return 0
        except (RedisUnavailable, ConfigError) as exc:
            log.error("%s", exc)
            return EXIT_UNAVAILABLE
        refusal = eviction_refusal(self.engine, self.options.but(accept_eviction=False))
        if refusal and not self.options.accept_eviction:
            log.error("%s", refusal)
            return EXIT_REFUSED
        if refusal:
            log.warning("Redis' maxmemory-policy can delete Symphony's keys; running anyway (--accept-eviction)")
        what = (f"pool {self.options.pool}" if self.options.pool else
                f"roles {','.join(self.options.roles)}" if self.options.roles else "every stage")
        log.info("symphony-worker %s: %d process(es) serving %s on %s%s", self.base, len(self.slots), what,
                 self.engine.display, " (burst)" if self.options.burst else "")
        for slot in self.slots:
            self._start(slot)
        if self.scheduled is not None:
            self.scheduled.start()
        self._supervise()
        self._final_reclaims()
        if self.scheduled is not None:
            self.scheduled.stop()
            if self.scheduled.event is not None:
                self.scheduled.acknowledge()  # every task is back: Azure may go ahead
        tally = self._tally()
        if self.options.burst:
            log.info("burst finished: %s", summary_line(tally, time.monotonic() - started))
        log.info("all workers stopped")
        return EXIT_REFUSED if self.refused else EXIT_UNAVAILABLE if self.gave_up else 0

    def _supervise(self) -> None:
        """Wait on the children until every one finished (burst), or stopped after a stop request."""
        stop_deadline: float | None = None
        while True:
            sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
            if sentinels:
                multiprocessing.connection.wait(sentinels, timeout=0.5)
            else:
                self.stop_event.wait(0.2)
            self._reap_children()
            self._flush_reclaims()
            self._restart_due()
            self._watch_walltime()
            self._watch_scheduled_events()
            alive = [s for s in self.slots if s.process is not None]
            if not alive and (self.stop_event.is_set() or all(s.finished for s in self.slots)):
                return
            if self.stop_event.is_set():
                stop_deadline = stop_deadline or self._kill_deadline()
                if time.monotonic() > stop_deadline:
                    for slot in alive:
                        log.warning("worker %s did not stop in time; killing it", slot.worker_id)
                        slot.process.kill()

    def _final_reclaims(self) -> None:
        for _ in range(20):
            if not self.to_reclaim:
                return
            self._flush_reclaims()
            if self.to_reclaim:
                time.sleep(0.5)  # Redis unavailable: the pace of the retries
        if self.to_reclaim:
            log.warning("could not reach Redis to reclaim %d worker(s); their leases will lapse and other "
                        "workers will reclaim their tasks", len(self.to_reclaim))

    def _tally(self) -> Counter:
        total: Counter = Counter()
        try:
            while not self.summaries.empty():
                total.update(self.summaries.get())
        except (OSError, EOFError, ValueError):
            pass
        return total


def _exit_reason(pid: int | None, code: int | None) -> str:
    """Why a worker process that did not exit cleanly ended, in words."""
    if code == EXIT_OVERRAN:
        return f"process {pid} ended itself: a handler run inline overran its timeout"
    if code is None or code >= 0:
        return f"process {pid} exited with code {code}"
    return f"process {pid} was killed by {_signal_name(-code)}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
