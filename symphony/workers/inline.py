"""Python handlers run in the worker process itself (a stage's ``isolation: inline``).

The default runs Python handlers in the worker's executor (:mod:`.executor`): a process of their
own that holds no secret, whose handler can be ended at its timeout by killing it. A stage that
says ``isolation: inline`` trades that for speed (no frame to another process and back per
batch: about a fifth of a no-op task's cost): its handler is called in the worker's main thread.
What it gives up, and what is kept:

* **Timeout**: a running call cannot be interrupted, so a watchdog thread ends the whole worker
  process when a handler is still running at its deadline (exit code :data:`EXIT_OVERRAN`). The
  reports of the tasks that finished before it are sent first; the supervisor then reclaims the
  process's tasks at once (the overrunning one is charged an attempt, as after a crash) and
  starts a new process. It is not recorded as ``timed_out``: it is retried up to
  ``max_attempts`` like a task whose worker died.
* **Lease**: the heartbeat is a thread of the same process. Pure Python code lets it run (the
  interpreter switches threads every few milliseconds), but a handler that holds the GIL for
  long (a C extension that never releases it) can starve it past the lease, and its tasks are
  then reclaimed by another worker while it runs (its report then finds them ``lost``).
* **Secrets**: the handler runs where the Redis password and the encryption key are (the
  environment is free of them, the process's memory is not): for trusted code only.
* **Cancellation** takes effect after the running call returns; a stop request between tasks.
* A handler that kills its process (``os._exit``, a crash in C) takes the worker process with it:
  its tasks are reclaimed at once by the supervisor, as for any crashed worker.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

from symphony.engine import redact

from .context import JobContext
from .handler_calls import Handlers, describe, flush_streams, trace
from .runner import ERROR, OK, TAIL_BYTES, RunResult

log = logging.getLogger("symphony.worker")
EXIT_OVERRAN = 6  # a worker process's exit code: an inline handler was still running at its deadline
IDLE_LOOK_S = 3600.0


class Watchdog(threading.Thread):
    """Ends the process when the inline call running now is still running at its deadline.

    Starting a task costs an attribute write; the thread is woken only when the new deadline is
    earlier than the one it is sleeping towards (after an idle spell, or a shorter timeout)."""

    def __init__(self, on_overrun: Callable[[str], None]):
        super().__init__(name="inline-watchdog", daemon=True)
        self.on_overrun = on_overrun
        self.current: tuple[int, float, str] | None = None  # (task number, deadline, name)
        self.planned = float("inf")
        self._cond = threading.Condition()

    def begin(self, seq: int, deadline: float, name: str) -> None:
        self.current = (seq, deadline, name)
        planned = self.planned  # 0.0: the thread is deciding now (it may have read the previous task)
        if planned == 0.0 or deadline < planned:
            with self._cond:
                self._cond.notify()

    def end(self) -> None:
        self.current = None

    def run(self) -> None:
        with self._cond:
            while True:
                self.planned = 0.0
                current, now = self.current, time.monotonic()
                if current is not None and now >= current[1]:
                    self.on_overrun(current[2])
                    return
                self.planned = current[1] if current is not None else now + IDLE_LOOK_S
                self._cond.wait(max(0.001, self.planned - now))


class InlineRunner:
    """Calls Python handlers in this process, one at a time, with the executor's semantics for
    their results (any exception, SystemExit included, is the task's failure)."""

    def __init__(self, before_exit: Callable[[], None]):
        self.before_exit = before_exit
        self.resolve = Handlers().resolve  # each handler imported once
        self._env: dict[str, str] = {}
        self._seq = 0
        self._watchdog: Watchdog | None = None

    def _overran(self, name: str) -> None:
        log.error("%s overran its timeout in the worker process (isolation: inline cannot interrupt a handler): "
                  "ending this worker process; its tasks are reclaimed and run again", name)
        try:
            self.before_exit()
        except Exception as exc:  # noqa: BLE001 - Redis gone: the supervisor reclaims them all
            log.warning("could not send the finished tasks' reports before exiting: %s", exc)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(EXIT_OVERRAN)

    def _set_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            if self._env.get(key) != value:
                os.environ[key] = value
                self._env[key] = value

    def run(self, target: str, ctx: dict[str, Any], env: dict[str, str], timeout: float, store: Any,
            name: str) -> RunResult:
        if self._watchdog is None:
            self._watchdog = Watchdog(self._overran)
            self._watchdog.start()
        self._set_env(env)
        self._seq += 1
        started = time.monotonic()
        self._watchdog.begin(self._seq, started + timeout, name)
        try:
            self.resolve(target)(JobContext(kv=store, **ctx))
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: the task's failure
            ms = int((time.monotonic() - started) * 1000)
            return RunResult(ERROR, error=redact(describe(exc))[:TAIL_BYTES], stderr=redact(trace(exc))[-TAIL_BYTES:],
                             duration_ms=ms)
        finally:
            self._watchdog.end()
            flush_streams()
        return RunResult(OK, duration_ms=int((time.monotonic() - started) * 1000))


