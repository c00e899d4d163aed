"""One worker process: its parts, wired together.

* the **loop** (:mod:`.loop`, the main thread): claim, run, report;
* the **dispatcher** (:mod:`.dispatch`): from a claimed task to its report, running Python
  handlers in the **executor** (:mod:`.executor`, a separate process that holds no secret and
  is killed on timeout) and commands as their own processes (:mod:`.runner`);
* the **heart** (:mod:`.heart`, a thread): heartbeat and lease, reaping, following the registry;
* its log lines, also shipped to Redis (:mod:`.logs`).

The main thread only waits while a handler runs (on the executor's pipe or the command's exit),
so the heart is never starved by handler code, and every timeout is enforced on time.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time

from symphony.engine import (Engine, capture_store_environment, describe_error, drop_secret_environment,
                             redact_standard_streams, sealer_from, share_one_connection,
                             without_secret_environment)

from . import logs
from .batchjob import BatchJob
from .dispatch import Dispatcher
from .executor import Executor
from .heart import Heart
from .health import HostState
from .hostinfo import HostSampler
from .loop import EXIT_DRAINED, EXIT_GAVE_UP, EXIT_OK, TaskLoop
from .memory import MemoryNotice
from .options import WorkerOptions
from .stopping import Stopping

log = logging.getLogger("symphony.worker")
BEAT_MARGIN_S = 0.12  # a blocking wait ends this long before a beat (a server tick at Redis' default hz 10)
__all__ = ["EXIT_DRAINED", "EXIT_GAVE_UP", "EXIT_OK", "WorkerProcess", "child_main"]


def log_ttl_ms(options: WorkerOptions) -> int:
    """A worker's hash and its log stream live this long after its last heartbeat."""
    return int(max(60.0, options.lease_s * 4) * 1000)


class WorkerProcess:
    def __init__(self, options: WorkerOptions, worker_id: str, *, stop_event=None, urgent_event=None,
                 supervisor: str = ""):
        self.options = options
        self.worker_id = worker_id
        self.supervisor = supervisor
        self.stopping = Stopping(stop_event, urgent_event, options.drain_timeout_s)
        config = options.redis.with_client_name(f"symphony-worker:{worker_id}")
        self.engine = Engine(config, socket_timeout=max(10.0, options.idle_wait_s + 5),
                             sealer=sealer_from(options.encryption_key), origin=BatchJob.from_env().origin())
        # one connection for the loop, the heart and the log shipper, taken in turn (engine/sharing.py)
        share_one_connection(self.engine.client)
        self.link = self.engine.worker_link(worker_id, [], idle_wait_s=options.idle_wait_s)
        self._wait_for_work = self.link.wait_for_work
        self.link.wait_for_work = self._wait_until_beat  # the blocking wait ends when the heart needs Redis
        self.sampler = HostSampler()
        self.executor = Executor(without_secret_environment(), log_level=logging.getLogger().getEffectiveLevel())
        self.host = HostState(self.engine, self.sampler.host)
        self.dispatcher = Dispatcher(self.engine, options, self.executor, self.stopping, self.host)
        self.memory = MemoryNotice(self.engine)  # Redis out of memory: said once by the loop or the heart
        self.loop = TaskLoop(self.engine, self.link, options, self.stopping, self.dispatcher, host=self.host,
                             memory=self.memory)
        self.heart = Heart(self.engine, self.link, heartbeat_s=options.heartbeat_s, lease_s=options.lease_s,
                           info=self.info, registry_changed=self._registry_changed, log_ttl_ms=log_ttl_ms(options),
                           after_beat=self.check_drain, memory=self.memory,
                           host_metrics=self.engine.host_metrics_writer(options.pool, self.sampler.host,
                                                                        interval_s=options.metrics_interval_s))

    def _wait_until_beat(self, timeout: float) -> bool:
        """Block on the bells for ``timeout`` at most (True: woken by a bell), keeping off the
        connection the heart shares while it beats: a blocking wait ends a little before the
        heart next needs Redis (Redis may end it up to a server tick late), the loop waits for
        the beat off Redis, then blocks again for what is left. So the heart takes the
        connection on time, and a beat costs an idle worker no extra request."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            due = self.heart.due_in()
            if due > left + BEAT_MARGIN_S:
                return self._wait_for_work(left)
            if due > 2 * BEAT_MARGIN_S:
                if self._wait_for_work(due - BEAT_MARGIN_S):
                    return True
                continue
            if self.stopping.wait(min(left, max(0.0, due) + 0.05)):  # the heart beats now, or is late
                return False

    # --- what the heartbeat says ----------------------------------------------------------------
    def info(self) -> dict[str, object]:
        """This process as the registry shows it (``symphony:worker:<id>``)."""
        info: dict[str, object] = {"name": self.options.name or self.worker_id, "host": self.sampler.host,
                                   "pid": os.getpid(), "pool": self.options.pool or "",
                                   "roles": ",".join(self.link.roles),
                                   "state": self._state(),
                                   "done": self.dispatcher.completed, "started": round(self.sampler.started, 3),
                                   "supervisor": self.supervisor}
        # the task being run (a beat between a claim and the task's start must not leave it blank)
        running = self.dispatcher.running
        info["current"] = running.claimed.raw if running is not None else ""
        info.update(self.sampler.sample())
        return info

    def _state(self) -> str:
        if self.stopping.stop_event.is_set():
            return "stopping"
        if self.stopping.drain is not None:  # drained: finishing (or handing back) what it holds, or resting
            return "drained" if self.loop.state == "drained" else "draining"
        return self.loop.state

    def check_drain(self) -> None:
        """Is this process drained (``symphony drain``)? Before the first claim and at every beat."""
        drain = self.engine.drain_for(self.worker_id, name=self.options.name, host=self.sampler.host,
                                      pool=self.options.pool)
        if drain != self.stopping.drain:
            if drain is None:
                log.info("undrained: claiming again")
            else:
                log.info("drained (%s): claiming nothing more", drain.describe())
            self.stopping.set_drain(drain)

    def _registry_changed(self, changes) -> None:
        """The registry changed (``changes``: which sessions): roles read again at the next claim
        (unless only a session's state changed); the running task's session, if it changed, read
        now (a cancel stops the task)."""
        if changes.roles_may_change:
            self.loop.roles_stale.set()
        running = self.dispatcher.running
        if running is not None and changes.touches(running.claimed.session):
            self.dispatcher.check_cancelled()

    # --- lifecycle ------------------------------------------------------------------------------
    def run(self) -> int:
        if hasattr(signal, "SIGINT"):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.request())
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a batch system's time warning is the supervisor's
        try:
            self.check_drain()
        except Exception as exc:  # noqa: BLE001 - Redis unavailable: the heart looks at every beat
            log.debug("could not read this worker's drain: %s", describe_error(exc))
        self.heart.start()
        code = EXIT_OK
        try:
            code = self.loop.run()
        finally:
            self.heart.stop()
            self.executor.close()
            self._retire(drained=code == EXIT_DRAINED)
        return code

    def _retire(self, drained: bool = False) -> None:
        try:
            if not self.link.in_flight():
                self.link.retire()
                if drained:
                    self.engine.forget_drain(self.worker_id)
                    log.info("drained: nothing in flight; exiting")
        except Exception as exc:  # noqa: BLE001 - Redis gone at exit: the lease will lapse and be reaped
            log.debug("could not retire cleanly: %s", describe_error(exc))

    def summary(self) -> dict[str, int]:
        tally = dict(self.loop.tally)
        staging = self.dispatcher.staging
        if staging.bytes_in or staging.bytes_out:
            tally["staged_in_bytes"], tally["staged_out_bytes"] = staging.bytes_in, staging.bytes_out
        return tally


def summary_line(tally: dict[str, int], seconds: float) -> str:
    """``12 done, 1 failed, 2 retried, 0 timed out in 3.4s`` (and the rarer outcomes when there were any)."""
    parts = [f"{tally.get('done', 0)} done", f"{tally.get('failed', 0)} failed", f"{tally.get('retried', 0)} retried",
             f"{tally.get('timed_out', 0)} timed out"]
    for key, words in (("cancelled", "cancelled"), ("handed_back", "handed back"), ("lost", "lost"),
                       ("dead_lettered", "not task messages (dead-lettered)")):
        if tally.get(key):
            parts.append(f"{tally[key]} {words}")
    if tally.get("staged_in_bytes") or tally.get("staged_out_bytes"):  # outputs in an object store, or sealed
        parts.append(f"{tally.get('staged_in_bytes', 0) / 1e6:.1f} MB fetched, "
                     f"{tally.get('staged_out_bytes', 0) / 1e6:.1f} MB stored through the scratch folder")
    return ", ".join(parts) + f" in {seconds:.1f}s"


def _prctl(option: int, value) -> None:
    """Linux's prctl(2) for this process; nothing elsewhere (or if the C library refuses)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def name_process(name: str) -> None:
    """The name ``ps -o comm``, ``top`` and ``pkill -x`` show (forked workers share their
    supervisor's command line)."""
    _prctl(15, name.encode()[:15])  # PR_SET_NAME


def not_dumpable() -> None:
    """Other processes of this user (a handler's) may not read this one's memory or environment
    through /proc or ptrace: it holds the Redis password and the encryption key."""
    _prctl(4, 0)  # PR_SET_DUMPABLE 0


def child_main(options: WorkerOptions, worker_id: str, stop_event, urgent_event, supervisor: str,
               summaries=None) -> None:
    """Entry point of a worker process started by the supervisor."""

    started = time.monotonic()
    redact_standard_streams()  # what this process prints is masked like the log
    logs.setup_logging(options.log_level, worker_id, options.log_format)
    # the options carry what this process needs (its Redis password is registered for redaction
    # when its client's configuration is made); no secret stays in the environment
    drop_secret_environment()
    capture_store_environment(dict(options.store_env))  # the stores' credentials, in this process's memory only
    not_dumpable()
    name_process("symphony-worker")
    if options.nice:
        from .priority import lower_priority

        lower_priority(options.nice)
    worker = WorkerProcess(options, worker_id, stop_event=stop_event, urgent_event=urgent_event,
                           supervisor=supervisor)
    shipper = logs.RedisLogShipper(lambda lines: worker.engine.write_worker_log(worker_id, lines,
                                                                               ttl_ms=log_ttl_ms(options)))
    logs.ship_to_redis(shipper)
    code = EXIT_OK
    try:
        code = worker.run()
    finally:
        tally = worker.summary()
        if options.burst:
            log.info("finished: %s", summary_line(tally, time.monotonic() - started))
        if summaries is not None:
            summaries.put(tally)
        shipper.close()
        worker.engine.close()
    raise SystemExit(code)
