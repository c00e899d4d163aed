"""Logging for workers: one line per event, dated, secrets redacted, as text or JSON.

The formats are every Symphony process's (``engine.configure_logging``): text
``2026-06-01 14:02:03 INFO    [worker-id] message``, or (``--log-format json``) one object a line
with ``time`` (UTC), ``level``, ``logger``, ``process``, ``message``, to which a worker adds
``worker``, ``session``, ``stage``, ``item`` and ``attempt`` (of the task running when the line
was written; null between tasks). Tasks are named ``stage:item@session`` in messages.

Each worker process also keeps its recent lines in Redis (a small capped stream, see
``Engine.worker_log``), so ``symphony logs WORKER`` and the console show why a worker is unhappy
without logging in to its machine. Those lines are shipped by a thread in batches, never from
the thread that logged.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Iterable

from symphony.engine import configure_logging, install_log_redaction

SHIP_EVERY_S = 0.5  # lines reach Redis within about this
SHIP_BUFFER = 1000  # lines kept while Redis is unavailable (the oldest go first)

_task: tuple[str, str, str, int] | None = None  # (session, stage, item, attempt) of the running task


def task_name(stage: str, item: str, session: str) -> str:
    """How logs name a task: ``stage:item@session``."""
    return f"{stage}:{item}@{session}"


def set_task(session: str, stage: str, item: str, attempt: int) -> None:
    """The task this process runs from now on (its lines carry it); a worker runs one at a time."""
    global _task
    _task = (session, stage, item, attempt)


def clear_task() -> None:
    global _task
    _task = None


class TaskFields(logging.Filter):
    """Adds this process's name (``worker``) and the running task's session, stage, item and
    attempt to every record (the JSON lines show them)."""

    def __init__(self, worker: str = ""):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        task = _task
        record.worker = self.worker
        record.session, record.stage, record.item, record.attempt = task if task else (None, None, None, None)
        return True


def setup_logging(level: str = "INFO", name: str = "", fmt: str = "text") -> None:
    """Log to stderr in ``fmt`` (text or json, ``engine.configure_logging``) at ``level``, every line
    redacted; JSON lines carry this process's name as ``worker`` and its running task's fields."""
    configure_logging(level, fmt, name=name)
    for handler in logging.getLogger().handlers:
        handler.addFilter(TaskFields(name))


class RedisLogShipper(logging.Handler):
    """Copies this process's log lines (already redacted) to its stream in Redis, in batches.

    ``write(lines)`` is called by the shipping thread with ``(at_ms, level, message)`` tuples;
    failures are silent (Redis unavailable is logged elsewhere) and the lines are tried again,
    the oldest dropped once :data:`SHIP_BUFFER` are waiting."""

    def __init__(self, write: Callable[[Iterable[tuple[int, str, str]]], object], *, every_s: float = SHIP_EVERY_S):
        super().__init__()
        self._write = write
        self._every_s = every_s
        self._lines: deque[tuple[int, str, str]] = deque(maxlen=SHIP_BUFFER)
        self._cond = threading.Condition()
        self._closed = False
        self.setFormatter(logging.Formatter("%(message)s"))
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (int(record.created * 1000), record.levelname, self.format(record))
        except Exception:  # noqa: BLE001 - a line that cannot be formatted is not shipped
            return
        with self._cond:
            self._lines.append(line)
            self._cond.notify()

    def _run(self) -> None:
        pause = self._every_s
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._lines or self._closed)
                if self._closed:
                    return
                # gather a batch (and, while Redis is unavailable, try less often)
                self._cond.wait_for(lambda: self._closed, pause)
                if self._closed:
                    return
            pause = self._every_s if self.flush() else min(10.0, pause * 2)

    def flush(self) -> bool:
        """Send what is waiting; False if Redis did not take it (it is kept for the next try)."""
        with self._cond:
            batch = list(self._lines)
            self._lines.clear()
        if not batch:
            return True
        try:
            self._write(batch)
        except Exception:  # noqa: BLE001 - never log from here (it would come back to us)
            with self._cond:
                self._lines.extendleft(reversed(batch))
            return False
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2)
        self.flush()
        super().close()


def ship_to_redis(shipper: RedisLogShipper) -> None:
    """Add ``shipper`` to the root logger (after :func:`setup_logging`), redacting like the rest."""
    root = logging.getLogger()
    root.addHandler(shipper)
    install_log_redaction(root)
