"""Running a command handler (an argv list, no shell unless asked), and the stage's outputs.

Outputs are written atomically (Luigi's rule): the handler writes to a temporary name next to
the final output, which is renamed into place only when the handler succeeded. A stage is
done when its output exists. A command whose stdout is its output (``stdout: output``) writes
into that temporary name through its stdout.

A command's exit is seen the moment it happens: on Linux the worker waits on a pidfd (a file
descriptor that becomes readable when the process exits), elsewhere a thread waits for it;
never by polling with sleeps. Python handlers run in the worker's executor
(:mod:`symphony.workers.executor`).
"""
from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import IO, Any, Callable, Mapping

import psutil

from symphony.engine import Handler, redact, without_secret_environment

OK, ERROR, TIMEOUT, INTERRUPTED = "ok", "error", "timeout", "interrupted"
TAIL_BYTES = 4000
TICK_S = 0.25  # how often a waiting worker looks at cancellation and stop requests


@dataclass(frozen=True)
class RunResult:
    status: str  # ok | error | timeout | interrupted
    error: str = ""
    stderr: str = ""
    duration_ms: int = 0
    reason: str = ""  # for interrupted: cancelled | handback


def _tail(fh) -> str:
    try:
        fh.flush()
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - TAIL_BYTES))
        return redact(fh.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return ""


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            parent = psutil.Process(proc.pid)
            for child in parent.children(recursive=True):
                child.kill()
            parent.kill()
    except (ProcessLookupError, psutil.Error, PermissionError, OSError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def command_line(handler: Handler, values: Mapping[str, Any]) -> list[str] | str:
    """The argv (or, with shell: true, the quoted shell string) for ``values``."""
    text_values = {k: "" if v is None else str(v) for k, v in values.items()}
    if handler.shell:
        return handler.argv[0].format_map({k: shlex.quote(v) for k, v in text_values.items()})
    return [arg.format_map(text_values) for arg in handler.argv]


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A handler's environment: this process's, without any secret variable, plus ``extra``."""
    env = without_secret_environment()
    env.update(extra)
    return env


# --- waiting for a child's exit ---------------------------------------------------------------------
class _ExitWaiter:
    """Waits for a child's exit without polling: ``wait(timeout)`` returns its exit code, or
    None if it still runs after ``timeout`` seconds."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._fd: int | None = None
        self._done: threading.Event | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._fd = os.pidfd_open(proc.pid)
            except OSError:  # an old kernel: fall back on a thread
                self._fd = None
        if self._fd is None and os.name == "posix":
            self._done = threading.Event()
            threading.Thread(target=self._wait_in_thread, name="command-exit", daemon=True).start()

    def _wait_in_thread(self) -> None:
        try:
            self.proc.wait()
        finally:
            assert self._done is not None
            self._done.set()

    def wait(self, timeout: float) -> int | None:
        timeout = max(0.0, timeout)
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            return self.proc.wait() if ready else None
        if self._done is not None:
            return self.proc.wait() if self._done.wait(timeout) else None
        try:  # Windows: a timed wait is WaitForSingleObject there, not a polling loop
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_command(handler: Handler, values: Mapping[str, Any], timeout: float,
                interrupt: Callable[[], str | None], env: Mapping[str, str] | None = None,
                stdout_path: str | None = None) -> RunResult:
    """Run a command handler; kill its whole process tree on timeout or interruption. With
    ``stdout_path``, its stdout is written to that file (the stage's temporary output)."""
    started = time.monotonic()
    cmd = command_line(handler, values)
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True  # its own group: Ctrl-C does not reach it, and we can kill the tree
    else:  # pragma: no cover - Windows
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    try:
        out: IO[bytes] = open(stdout_path, "wb") if stdout_path else tempfile.TemporaryFile()
        err: IO[bytes] = tempfile.TemporaryFile()
    except OSError as exc:
        where = stdout_path or tempfile.gettempdir()
        return RunResult(ERROR, error=f"cannot open a file for the command's output in {where}: {exc}")
    with out, err:
        try:
            proc = subprocess.Popen(cmd, shell=handler.shell, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=child_env(env or {}), **kwargs)
        except OSError as exc:
            return RunResult(ERROR, error=f"cannot start {cmd[0] if isinstance(cmd, list) else 'shell'}: {exc}",
                             duration_ms=int((time.monotonic() - started) * 1000))
        waiter = _ExitWaiter(proc)
        try:
            code, reason = _wait(waiter, started + timeout, interrupt)
        finally:
            waiter.close()
        duration = int((time.monotonic() - started) * 1000)
        if code is None:
            _kill_tree(proc)
            if reason:
                return RunResult(INTERRUPTED, error=reason, stderr=_tail(err), reason=reason, duration_ms=duration)
            return RunResult(TIMEOUT, error=f"timed out after {timeout:g}s", stderr=_tail(err), duration_ms=duration)
        if code != 0:
            stderr = _tail(err)
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            if not last and not stdout_path:
                last = _tail(out).strip()[-200:]
            return RunResult(ERROR, error=f"exit code {code}" + (f": {last}" if last else ""), stderr=stderr,
                             duration_ms=duration)
        return RunResult(OK, duration_ms=duration)


def _wait(waiter: _ExitWaiter, deadline: float, interrupt: Callable[[], str | None]) -> tuple[int | None, str | None]:
    """(exit code, None) when the command exits; (None, reason) if interrupted; (None, None) at the deadline."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, None
        code = waiter.wait(min(TICK_S, remaining))
        if code is not None:
            return code, None
        reason = interrupt()
        if reason:
            return None, reason


# --- outputs ------------------------------------------------------------------------------------------
def temp_output(final: str) -> str:
    """A temporary name next to ``final`` (same directory, so the rename is atomic)."""
    return f"{final}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def prepare_output(final: str) -> str | None:
    """Make the output's directory; an error message (never an exception) if the OS refuses."""
    directory = os.path.dirname(final) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return f"cannot create the output directory {directory}: {exc.strerror or exc}"
    return None


def commit_output(temp: str, final: str) -> str | None:
    """Move the handler's output into place; an error message if there is none or the OS refuses."""
    try:
        if os.path.exists(temp):
            os.replace(temp, final)
            return None
    except OSError as exc:
        return f"cannot move the output into place ({final}): {exc.strerror or exc}"
    if os.path.exists(final):  # the handler wrote the final name itself
        return None
    return f"the handler succeeded but wrote no output (expected {final})"


def discard_output(temp: str | None) -> None:
    if temp:
        try:
            os.remove(temp)
        except OSError:
            pass


def python_executable() -> str:
    return sys.executable
