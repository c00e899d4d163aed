"""The handler executor: the interpreter in which a worker process runs its Python handlers.

    python -m symphony.workers.executor_main --parent PID      (started by the worker, never by hand)

It is started fresh (not forked), with an environment without any secret variable and an argv
with none, and it never gets the Redis connection, the password or the encryption key: handler
code runs where no secret is. It runs one task at a time, as long as its worker lives; a
handler that overruns its timeout, or whose session is cancelled, is ended by killing this
process (the worker starts a new one for the next task). Anything a handler raises, SystemExit
and KeyboardInterrupt included, is that task's failure, reported to the worker.

Its standard input and output carry the frames of :mod:`symphony.workers.channel`; what the
handler prints (file descriptors 1 and 2) goes to a pipe the worker reads, redacts and logs.
``ctx.kv`` calls travel to the worker, which runs them on the job's store (encrypting values
when task data is encrypted) and sends the answer back.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from .channel import Channel, ChannelClosed
from .context import JobContext
from .handler_calls import Handlers, describe, flush_streams, trace

SKIP_LOOK_S = 0.005  # between two tasks, look for the worker's stop request at most this often
HANDLER_LOG = logging.getLogger("symphony.handler")  # every JobContext's ``log``
EXPECT_S = 0.002  # after the worker's "expect" (it woke for work), look for its batch this long before sleeping


class JobStoreError(RuntimeError):
    """A ``ctx.kv`` call failed in the worker (Redis unavailable, a wrong key, a bad value)."""


class RemoteJobStore:
    """``ctx.kv`` in the executor: every call is answered by the worker process."""

    def __init__(self, executor: "Executor", n: int):
        self._executor, self._n = executor, n
        self.closed = False

    def _call(self, call: str, *args: Any) -> Any:
        if self.closed:
            raise JobStoreError("this task is over: its job store can no longer be used")
        return self._executor.kv(self._n, call, list(args))

    def set(self, name: str, value: Any) -> None:
        self._call("set", name, value)

    def update(self, values: dict[str, Any]) -> None:
        self._call("update", dict(values))

    def incr(self, name: str, amount: int = 1) -> int:
        return int(self._call("incr", name, int(amount)))

    def get(self, name: str, default: Any = None) -> Any:
        value = self._call("get", name)
        return default if value is None else value

    def all(self) -> dict[str, str]:
        return dict(self._call("all"))


class Doorbell:
    """The worker's doorbell (POSIX): one byte written tells it to read the pipe now. Results of a
    batch are written as each task ends, without ringing (the worker reads them in one go when
    the batch ends, or when it looks at its clock); what needs the worker sooner rings."""

    def __init__(self, fd: int | None):
        self.fd = fd
        if fd is not None:
            os.set_blocking(fd, False)  # a full doorbell has rung enough

    def ring(self) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"!")
        except BlockingIOError:
            pass
        except OSError:  # the worker is gone: the next send finds it out
            self.fd = None


class ChannelLogHandler(logging.Handler):
    """Handler log records (``ctx.log``, any library) go to the worker, which logs them."""

    def __init__(self, channel: Channel, bell: Doorbell | None = None):
        super().__init__()
        self.channel = channel
        self.bell = bell or Doorbell(None)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self.channel.send({"op": "log", "level": record.levelno, "name": record.name, "message": message})
            self.bell.ring()
        except Exception:  # noqa: BLE001 - logging must never break a handler
            pass


class Executor:
    def __init__(self, channel: Channel, bell: Doorbell | None = None):
        self.channel = channel
        self.bell = bell or Doorbell(None)
        self.resolve = Handlers().resolve  # each handler imported once
        self._kv_lock = threading.Lock()
        self._skip = False
        self._skip_looked = 0.0
        self._env: dict[str, str] = {}  # the handler variables set last (only changes are set again)

    # --- what the worker asks -------------------------------------------------------------------
    def serve(self) -> int:
        frame: dict[str, Any] | None = None
        while True:
            if frame is None:
                try:
                    frame = self.channel.recv()
                except ChannelClosed:
                    return 0
            op = frame.get("op")
            if op == "expect":  # the worker woke for work: a batch may follow within a round trip
                try:
                    frame = self._expect()
                except ChannelClosed:
                    return 0
                continue
            frame, current = None, frame
            if op == "init":
                sys.path[:] = [str(p) for p in current.get("path") or sys.path]
                logging.getLogger().setLevel(int(current.get("level") or logging.INFO))
            elif op == "run":
                self._skip = False
                self.run_batch(list(current.get("shapes") or ()), list(current.get("tasks") or ()))
            elif op == "warm":  # the worker is idle: import the handlers its next tasks will call
                self.warm([str(t) for t in current.get("targets") or ()])
            # a "skip" that arrives after its batch ended has nothing left to skip

    def _expect(self) -> dict[str, Any] | None:
        """Stay awake (looking at the pipe, not sleeping in it) for the frame that should follow
        in a moment, for at most :data:`EXPECT_S`: a process asleep in a read is slow to wake on a
        virtual machine, and the batch would wait for it."""
        deadline = time.monotonic() + EXPECT_S
        while time.monotonic() < deadline:
            frame = self.channel.poll(0)
            if frame is not None:
                return frame
        return None

    def run_batch(self, shapes: list[Any], tasks: list[Any]) -> None:
        """Run a batch's tasks in order (each a row of :data:`executor.ROW_FIELDS` after its
        shape's index), one result each. The doorbell rings once the last result of a batch of
        several tasks is written (the worker reads them all in one go); a single task's result
        wakes the worker through the pipe itself."""
        ring_after = len(tasks) - 1 if len(tasks) > 1 else -1
        for n, row in enumerate(tasks):
            if n and self._skip_requested():
                self.channel.send({"op": "skipped", "n": n})
                self.bell.ring()
                return
            self.run_one(n, shapes, row)
            if n == ring_after:
                self.bell.ring()

    def _skip_requested(self) -> bool:
        """Between two tasks: did the worker ask to stop after the current one? (Looked at every
        few milliseconds, not before each of a batch of short tasks: a system call each.)"""
        now = time.monotonic()
        if self._skip or now - self._skip_looked < SKIP_LOOK_S:
            return self._skip
        self._skip_looked = now
        while not self._skip:
            frame = self.channel.poll(0)
            if frame is None:
                break
            if frame.get("op") == "skip":
                self._skip = True
        return self._skip

    # --- one task -------------------------------------------------------------------------------
    def _set_env(self, env: tuple[tuple[str, str], ...]) -> None:
        known = self._env
        for key, value in env:
            if known.get(key) != value:
                os.environ[key] = value
                known[key] = value

    def run_one(self, n: int, shapes: list[Any], row: list[Any]) -> None:
        """Run task ``n`` of the batch and send its result (``ms``: how long it took, ``t``: when it
        ended, on this machine's monotonic clock)."""
        store = RemoteJobStore(self, n)
        failure: BaseException | None = None
        started = time.monotonic()
        try:
            target, session, stage, root, params = shapes[row[0]]
            _, item, attempt, input_, item_input, output, final, meta = row
            self._set_env((("SYMPHONY_SESSION", str(session)), ("SYMPHONY_STAGE", str(stage)),
                           ("SYMPHONY_ITEM", str(item)), ("SYMPHONY_ATTEMPT", str(attempt)),
                           ("SYMPHONY_ITEM_INPUT", str(item_input or ""))))
            ctx = JobContext(session=session, stage=stage, item=item, attempt=attempt, input=input_, output=output,
                             final_output=final, root=root, params=json.loads(params) if params != "{}" else {},
                             meta=meta if meta is not None else {}, kv=store, log=HANDLER_LOG, item_input=item_input)
            self.resolve(str(target))(ctx)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: the task's failure
            failure = exc
        finally:
            store.closed = True
            flush_streams()
        ended = time.monotonic()
        ms = round((ended - started) * 1000, 3)
        if failure is None:  # the common case, written without the JSON encoder
            self.channel.send_raw(b'{"op":"result","n":%d,"ok":true,"ms":%.3f,"t":%.6f}' % (n, ms, ended))
        else:
            self.channel.send({"op": "result", "n": n, "ok": False, "error": describe(failure), "trace": trace(failure),
                               "ms": ms, "t": ended})

    def warm(self, targets: list[str]) -> None:
        """Import handlers ahead of their first task; one that fails to import says so when its
        task runs (it is imported again then, and the task fails with the error)."""
        for target in targets:
            try:
                self.resolve(target)
            except BaseException:  # noqa: BLE001 - even SystemExit at import: the task will report it
                pass
            finally:
                flush_streams()

    def kv(self, n: int, call: str, args: list[Any]) -> Any:
        """Ask the worker to run a job store call for task ``n``; wait for its answer."""
        with self._kv_lock:
            self.channel.send({"op": "kv", "n": n, "call": call, "args": args})
            self.bell.ring()
            while True:
                frame = self.channel.recv()
                op = frame.get("op")
                if op == "skip":
                    self._skip = True
                elif op == "kv":
                    if frame.get("ok"):
                        return frame.get("value")
                    raise JobStoreError(str(frame.get("error") or "the job store call failed"))


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its worker dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the worker was gone before the request took effect
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symphony.workers.executor_main",
                                     description="The process in which a worker runs its Python handlers "
                                                 "(started by symphony-worker).")
    parser.add_argument("--parent", type=int, required=True, help="the worker process's pid")
    parser.add_argument("--doorbell", type=int, default=None, help="the descriptor of the worker's doorbell pipe")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    control_in, control_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # handlers read nothing from stdin
    os.close(null)
    os.dup2(2, 1)  # what a handler prints goes where its stderr goes: to the worker, redacted there
    channel = Channel(control_in, control_out)
    bell = Doorbell(args.doorbell)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(ChannelLogHandler(channel, bell))
    return Executor(channel, bell).serve()


if __name__ == "__main__":
    sys.exit(main())
