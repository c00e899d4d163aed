"""Running one stage handler: a Python callable, or a command as an argv list (no shell unless asked).

Outputs are written atomically (Luigi's rule): the handler writes to a temporary name next to
the final output, which is renamed into place only when the handler succeeded. A stage is
done when its output exists.
"""
from __future__ import annotations

import importlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import psutil

from symphony.engine import Handler, redact

OK, ERROR, TIMEOUT, INTERRUPTED = "ok", "error", "timeout", "interrupted"
TAIL_BYTES = 4000
SECRET_ENV = ("REDIS_PASSWORD", "REDIS_URL", "SYMPHONY_REDIS_URL", "AZURE_CLIENT_SECRET", "SYMPHONY_KEY")


@dataclass(frozen=True)
class RunResult:
    status: str  # ok | error | timeout | interrupted
    error: str = ""
    stderr: str = ""
    duration_ms: int = 0
    reason: str = ""  # for interrupted: cancelled | handback


_callables: dict[str, Callable[..., Any]] = {}


def resolve_callable(target: str) -> Callable[..., Any]:
    fn = _callables.get(target)
    if fn is None:
        module_name, _, func_name = target.partition(":")
        module = importlib.import_module(module_name)
        fn = getattr(module, func_name)
        if not callable(fn):
            raise TypeError(f"{target} is not callable")
        _callables[target] = fn
    return fn


def run_python(target: str, ctx: Any) -> RunResult:
    started = time.monotonic()
    try:
        resolve_callable(target)(ctx)
    except Exception as exc:  # the handler's failure is the task's failure, never the worker's
        text = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return RunResult(ERROR, error=f"{type(exc).__name__}: {redact(exc)}", stderr=text[-TAIL_BYTES:],
                         duration_ms=int((time.monotonic() - started) * 1000))
    return RunResult(OK, duration_ms=int((time.monotonic() - started) * 1000))


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
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(extra)
    return env


def run_command(handler: Handler, values: Mapping[str, Any], timeout: float,
                interrupt: Callable[[], str | None], env: Mapping[str, str] | None = None) -> RunResult:
    """Run a command handler; kill its whole process tree on timeout or interruption."""
    started = time.monotonic()
    cmd = command_line(handler, values)
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True  # its own group: Ctrl-C does not reach it, and we can kill the tree
    else:  # pragma: no cover - Windows
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, shell=handler.shell, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=child_env(env or {}), **kwargs)
        except OSError as exc:
            return RunResult(ERROR, error=f"cannot start {cmd[0] if isinstance(cmd, list) else 'shell'}: {exc}",
                             duration_ms=int((time.monotonic() - started) * 1000))
        deadline = started + timeout
        while True:
            try:
                code = proc.wait(timeout=min(0.2, max(0.001, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            reason = interrupt()
            if reason:
                _kill_tree(proc)
                return RunResult(INTERRUPTED, error=reason, stderr=_tail(err), reason=reason,
                                 duration_ms=int((time.monotonic() - started) * 1000))
            if time.monotonic() >= deadline:
                _kill_tree(proc)
                return RunResult(TIMEOUT, error=f"timed out after {timeout:g}s", stderr=_tail(err),
                                 duration_ms=int((time.monotonic() - started) * 1000))
        duration = int((time.monotonic() - started) * 1000)
        if code != 0:
            stderr = _tail(err)
            last = stderr.strip().splitlines()[-1] if stderr.strip() else _tail(out).strip()[-200:]
            return RunResult(ERROR, error=f"exit code {code}" + (f": {last}" if last else ""), stderr=stderr,
                             duration_ms=duration)
        return RunResult(OK, duration_ms=duration)


def temp_output(final: str) -> str:
    """A temporary name next to ``final`` (same directory, so the rename is atomic)."""
    return f"{final}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def commit_output(temp: str, final: str) -> str | None:
    """Move the handler's output into place; return an error if there is none."""
    if os.path.exists(temp):
        os.replace(temp, final)
        return None
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
