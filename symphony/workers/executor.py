"""The worker's side of its handler executor (:mod:`symphony.workers.executor_main`).

Python handlers run in a separate, long-lived interpreter per worker process, so that nothing a
handler does can starve what keeps its task safe: the worker process keeps the Redis connection,
the heartbeat (the lease) and the clock. A handler that holds the GIL, loops, or ignores its
timeout is ended on time by killing its executor; a handler that kills its own process
(``os._exit``, a crash in C) fails its task, not the worker. The executor is started on the
first Python task and replaced after it was killed or died.

The worker sends a batch of tasks (a prefetch of short tasks travels as one frame: what the tasks
of a stage share once, a short row per task) and reads the results, answering the handlers'
``ctx.kv`` calls meanwhile; between two tasks it may ask the executor to stop (``skip``: the
worker is stopping, the rest of the batch goes back). Each result is written to the pipe as its
task ends (so a killed executor's finished tasks are known), but on POSIX the worker sleeps on a
second pipe, the doorbell, which the executor rings only when the worker must read: after a
batch's last result, or a frame that needs it (``kv``, ``log``, ``skipped``). The worker wakes once
per batch, not once per result, and at least every :data:`TICK_S` to look at the running task's
clock (the results read then say which task is running, and since when).
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import json
from typing import Any, Callable, Mapping, Sequence

from symphony.engine import JobStore, describe_error, redact

from .channel import Channel, ChannelClosed, ProtocolError
from .runner import ERROR, INTERRUPTED, OK, TAIL_BYTES, TIMEOUT, RunResult

log = logging.getLogger("symphony.worker")
handler_log = logging.getLogger("symphony.handler")
TICK_S = 0.25  # how often a waiting worker looks at cancellation and stop requests
GATHER_MAX_S = 0.002  # while a batch of short tasks runs, its results are read in bursts at most this far apart
GATHER_MIN_S = 0.0001  # a shorter pause is not worth a sleep (waking costs about as much)
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


class PythonCall:
    """One Python task as the executor receives it (all plain JSON values).

    ``shape`` is what the tasks of one stage of one session share (the handler's target, the
    session, the stage, the data root and the stage's parameters as JSON): a batch sends each
    shape once, and each task as a short row (:data:`ROW_FIELDS`). The handler's variables
    (``SYMPHONY_SESSION``, ``_STAGE``, ``_ITEM``, ``_ATTEMPT``, ``_ITEM_INPUT``) are made from
    them by the executor."""

    __slots__ = ("target", "timeout", "shape", "row")

    def __init__(self, target: str, timeout: float, shape: tuple[str, str, str, str, str],
                 row: tuple[Any, ...]):
        self.target, self.timeout, self.shape, self.row = target, timeout, shape, row


ROW_FIELDS = ("item", "attempt", "input", "item_input", "output", "final_output", "meta")


def run_frame(calls: Sequence[PythonCall]) -> bytes:
    """The ``run`` frame of a batch: its shapes once, then one row per task (the row's first
    value is its shape's index)."""
    shapes: dict[tuple, int] = {}
    rows = []
    for call in calls:
        index = shapes.get(call.shape)
        if index is None:
            index = shapes[call.shape] = len(shapes)
        rows.append((index, *call.row))
    return _dumps({"op": "run", "shapes": list(shapes), "tasks": rows}).encode("utf-8")


class ExecutorDied(Exception):
    pass


class Executor:
    def __init__(self, env: Mapping[str, str], *, log_level: int = logging.INFO):
        self.env = dict(env)
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self._pump: threading.Thread | None = None
        self.started_count = 0
        self.cadence_s: float | None = None  # how far apart results of a batch come (the executor's clock)
        self.doorbell: int | None = None  # POSIX: the pipe the executor rings when the worker should read (below)

    # --- the process --------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _start(self) -> None:
        cmd = [sys.executable, "-u", "-m", "symphony.workers.executor_main", "--parent", str(os.getpid())]
        kwargs: dict[str, Any] = {}
        ring = None
        if os.name == "posix":
            kwargs["start_new_session"] = True  # its own group: Ctrl-C does not reach it; killed as a tree
            self.doorbell, ring = os.pipe()
            cmd += ["--doorbell", str(ring)]
            kwargs["pass_fds"] = (ring,)
        else:  # pragma: no cover - Windows
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=self.env, close_fds=True, **kwargs)
        except BaseException:
            self._close_doorbell()
            raise
        finally:
            if ring is not None:
                os.close(ring)
        self.channel = Channel(os.dup(self.proc.stdout.fileno()), os.dup(self.proc.stdin.fileno()))
        self.proc.stdout.close()
        self.proc.stdin.close()
        self._pump = threading.Thread(target=_pump_output, args=(self.proc.stderr, self.proc.pid),
                                      name="handler-output", daemon=True)
        self._pump.start()
        self.channel.send({"op": "init", "path": list(sys.path), "level": self.log_level})
        self.started_count += 1
        log.debug("handler executor started (pid %d)", self.proc.pid)

    def start(self, targets: Sequence[str] = ()) -> None:
        """Start the executor now (if it is not running), so that the next task does not wait for
        it, and have it import the handlers ``targets`` (module:function) meanwhile."""
        if self.proc is None:
            self._start()
        if targets and self.channel is not None:
            try:
                self.channel.send({"op": "warm", "targets": list(targets)})
            except ChannelClosed:
                pass  # the next task finds it gone

    def expect(self) -> None:
        """The worker woke for work (its claim is on the way): have a running executor stay
        awake for the batch that may follow (``op: expect``)."""
        if self.proc is not None and self.channel is not None:
            try:
                self.channel.send_raw(b'{"op":"expect"}')
            except ChannelClosed:
                pass  # the next task finds it gone

    def kill(self) -> None:
        """End the executor and everything its handler started."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:  # pragma: no cover - Windows
                proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass
        self._reap(proc)

    def close(self) -> None:
        """At the worker's exit: let the executor see the end of its input and leave."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.channel is not None:
            self.channel.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc = proc
            self.kill()
            return
        self._reap(proc)

    def _close_doorbell(self) -> None:
        fd, self.doorbell = self.doorbell, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _reap(self, proc: subprocess.Popen) -> None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self._close_doorbell()
        if self._pump is not None:
            self._pump.join(timeout=2)
            self._pump = None

    def _exit_description(self) -> str:
        proc = self.proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        if code is None:
            return "the handler's process stopped answering"
        if code < 0:
            try:
                return f"the handler's process was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"the handler's process was killed by signal {-code}"
        return f"the handler's process exited with code {code} during the task"

    # --- running tasks ------------------------------------------------------------------------
    def run(self, calls: Sequence[PythonCall], *, on_done: Callable[[int, RunResult], None],
            interrupt: Callable[[int], str | None], stopping: Callable[[], bool],
            job_store: Callable[[int], JobStore]) -> int:
        """Run ``calls`` in order; ``on_done(n, result)`` for each one that ran. Returns how many
        ran (or were ended): the others were not started (the worker is stopping, or the
        executor had to be replaced) and may be run again as they are."""
        if self.proc is None:
            self._start()
        assert self.channel is not None
        try:
            self.channel.send_raw(run_frame(calls))
        except ChannelClosed:
            on_done(0, RunResult(ERROR, error=self._exit_description()))
            self.kill()
            return 1
        return _Batch(self, calls, on_done, interrupt, stopping, job_store).wait()


class _Batch:
    """Waiting for one batch's results: the clock, the answers to ``ctx.kv``, stop requests."""

    def __init__(self, executor: Executor, calls: Sequence[PythonCall], on_done, interrupt, stopping, job_store):
        self.executor, self.calls = executor, calls
        self.on_done, self.interrupt, self.stopping, self.job_store = on_done, interrupt, stopping, job_store
        self.n = 0
        self.started = time.monotonic()  # when task n started
        self.skip_sent = False
        self.more = False  # the last read of the pipe stopped at its bound: more is waiting
        self.interactive = False  # a handler of this batch used ctx.kv: answer at once, never pause

    def wait(self) -> int:
        calls = self.calls
        while self.n < len(calls):
            rung = self.executor.doorbell is not None
            finished = self._take_ready(read=rung)
            if finished is not None or self.n >= len(calls):
                return self.n if finished is None else finished
            deadline = self.started + calls[self.n].timeout
            reason = self.interrupt(self.n)
            now = time.monotonic()
            if reason or now >= deadline:
                if not reason:  # what the executor wrote meanwhile comes first (the worker may have been busy)
                    n = self.n
                    finished = self._take_ready(read=True)
                    if finished is not None:
                        return finished
                    if self.n != n:
                        continue
                return self._end(reason, now)
            if not self.skip_sent and self.n + 1 < len(calls) and self.stopping():
                self._send({"op": "skip"})
                self.skip_sent = True
            left = min(TICK_S, deadline - now)
            if rung and not self.interactive and len(calls) > 1:
                if not self.more:
                    self._wait_for_bell(left)
                continue
            finished = self._wait_for_frame(left, gather=not rung)
            if finished is not None:
                return finished
        return self.n

    def _take_ready(self, read: bool) -> int | None:
        """Handle the frames already read (``read``: and what the pipe holds now)."""
        channel = self.executor.channel
        try:
            if read:
                self.more = channel.drain()
            frame = channel.take()
            while frame is not None:
                finished = self._handle(frame)
                if finished is not None or self.n >= len(self.calls):
                    return finished
                frame = channel.take()
        except (ChannelClosed, ProtocolError) as exc:
            return self._died(exc)
        return None

    def _wait_for_bell(self, timeout: float) -> None:
        """A batch of several tasks: sleep until the executor rings (the batch's last result is
        written, or a frame needs an answer or a look: ``kv``, ``log``, ``skipped``), the executor
        ends, or ``timeout``. Its results pile up in the pipe meanwhile, without waking this
        process for each (a single task's result wakes it through the pipe itself)."""
        bell = self.executor.doorbell
        ready, _, _ = select.select([bell], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            rang = os.read(bell, 4096)
        except OSError:
            rang = b""
        if not rang:  # the executor closed it (it ended, or its handler closed the descriptor): read as before
            self.executor._close_doorbell()

    def _wait_for_frame(self, timeout: float, gather: bool) -> int | None:
        """The next frame (``gather``, without a doorbell: after a pause for results to pile up)."""
        if gather:
            self._gather(timeout)
        try:
            frame = self.executor.channel.poll(timeout)
        except (ChannelClosed, ProtocolError) as exc:
            return self._died(exc)
        return None if frame is None else self._handle(frame)

    def _gather(self, until_deadline: float) -> None:
        """Let the results of a batch of short tasks pile up a moment, then read them together:
        with two processes on few cores, waking the worker for each result is what a short task
        costs most. The pause is what the rest of the batch should take (at most GATHER_MAX_S),
        never past the running task's deadline; a batch whose handlers use ``ctx.kv`` (the
        executor waits for the worker's answer) is never paused.

        The pause ends when the next to last task should end (the running one started at
        ``self.started``), so the last result is waited for in the pipe, seen the moment it is
        written: the next claim waits for it, and the executor idles until then."""
        cadence = self.executor.cadence_s
        remaining = len(self.calls) - self.n
        if cadence is None or remaining < 2 or self.interactive or self.executor.channel.has_frame():
            return
        pause = min(GATHER_MAX_S, cadence * (remaining - 1) - (time.monotonic() - self.started), until_deadline)
        if pause > GATHER_MIN_S:
            time.sleep(pause)  # the pace of reading, not a synchronisation: the pipe keeps every result

    def _handle(self, frame: dict[str, Any]) -> int | None:
        op = frame.get("op")
        if op == "result" and frame.get("n") == self.n:
            self.on_done(self.n, _result(frame))
            self.n += 1
            now = time.monotonic()
            try:
                ended = float(frame.get("t") or now)
            except (TypeError, ValueError):
                ended = now
            if self.n > 1:  # the interval between two results: the executor's pace on this batch
                gap = max(0.0, ended - self.started)
                cadence = self.executor.cadence_s
                self.executor.cadence_s = gap if cadence is None else cadence + (gap - cadence) * 0.2
            self.started = min(now, max(self.started, ended))
        elif op == "kv":
            self.interactive = True
            self._send(_serve_kv(self.job_store(self.n), frame))
        elif op == "log":
            _log_from_handler(frame)
        elif op == "skipped":
            return self.n
        else:
            return self._died(ProtocolError(f"an unexpected frame {str(op)[:40]!r}"))
        return None

    def _send(self, frame: dict[str, Any]) -> None:
        try:
            self.executor.channel.send(frame)
        except ChannelClosed:
            pass  # the next read finds the executor gone

    def _end(self, reason: str | None, now: float) -> int:
        """Stop the task that is running now: cancelled, handed back, or past its timeout."""
        self.executor.kill()
        took = int((now - self.started) * 1000)
        if reason:
            self.on_done(self.n, RunResult(INTERRUPTED, error=reason, reason=reason, duration_ms=took))
        else:
            timeout = self.calls[self.n].timeout
            self.on_done(self.n, RunResult(TIMEOUT, error=f"timed out after {timeout:g}s", duration_ms=took))
        return self.n + 1

    def _died(self, exc: BaseException) -> int:
        if isinstance(exc, ProtocolError):
            error = f"the handler's process broke its protocol ({exc}) and was ended"
        else:
            error = self.executor._exit_description()
        took = int((time.monotonic() - self.started) * 1000)
        self.executor.kill()
        self.on_done(self.n, RunResult(ERROR, error=error, duration_ms=took))
        return self.n + 1


def _result(frame: dict[str, Any]) -> RunResult:
    try:
        ms = int(float(frame.get("ms") or 0))
    except (TypeError, ValueError):
        ms = 0
    if frame.get("ok"):
        return RunResult(OK, duration_ms=ms)
    error = redact(str(frame.get("error") or "the handler failed"))
    return RunResult(ERROR, error=error[:TAIL_BYTES], stderr=redact(str(frame.get("trace") or ""))[-TAIL_BYTES:],
                     duration_ms=ms)


def _serve_kv(store: JobStore, frame: dict[str, Any]) -> dict[str, Any]:
    """Run one ``ctx.kv`` call of a handler on the job's store (values encrypted here if need be)."""
    call, args = frame.get("call"), frame.get("args") or []
    try:
        value: Any = None
        if call == "set":
            store.set(str(args[0]), args[1])
        elif call == "update":
            store.update(dict(args[0]))
        elif call == "incr":
            value = store.incr(str(args[0]), int(args[1]))
        elif call == "get":
            value = store.get(str(args[0]))
        elif call == "all":
            value = store.all()
        else:
            raise ValueError(f"unknown job store call {str(call)[:40]!r}")
    except Exception as exc:  # noqa: BLE001 - the handler's call failed, the handler decides
        return {"op": "kv", "ok": False, "error": redact(describe_error(exc))}
    return {"op": "kv", "ok": True, "value": value}


def _log_from_handler(frame: dict[str, Any]) -> None:
    try:
        level = int(frame.get("level") or logging.INFO)
    except (TypeError, ValueError):
        level = logging.INFO
    handler_log.log(level, "%s", redact(str(frame.get("message", ""))))


def _pump_output(stream, pid: int) -> None:
    """What the handlers print, line by line, redacted, into the worker's log."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                handler_log.info("%s", redact(line))
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass
