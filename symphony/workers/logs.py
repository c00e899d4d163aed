"""Logging for workers: one line per event, dated, secrets redacted, as text or JSON.

Text: ``2026-06-01 14:02:03.123 INFO    [worker-id] message``. JSON (``--log-format json``): one
object a line with ``time`` (ISO 8601, UTC), ``level``, ``worker``, ``session``, ``stage``,
``item``, ``attempt`` (of the task running when the line was written; null between tasks) and
``message``. Tasks are named ``stage:item@session`` in messages.

Each worker process also keeps its recent lines in Redis (a small capped stream, see
``Engine.worker_log``), so ``symphony logs WORKER`` and the console show why a worker is unhappy
without logging in to its machine. Those lines are shipped by a thread in batches, never from
the thread that logged.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Callable, Iterable

from symphony.engine import install_log_redaction

TEXT, JSON = "text", "json"
FORMATS = (TEXT, JSON)
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
    """Adds the running task's session, stage, item and attempt to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = _task
        record.session, record.stage, record.item, record.attempt = task if task else (None, None, None, None)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: str):
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_text:
            message += "\n" + record.exc_text
        return json.dumps({
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "worker": self.worker, "session": getattr(record, "session", None),
            "stage": getattr(record, "stage", None), "item": getattr(record, "item", None),
            "attempt": getattr(record, "attempt", None), "message": message}, ensure_ascii=False)


def text_formatter(name: str) -> logging.Formatter:
    prefix = f"[{name}] " if name else ""
    return logging.Formatter(f"%(asctime)s.%(msecs)03d %(levelname)-7s {prefix}%(message)s", "%Y-%m-%d %H:%M:%S")


def setup_logging(level: str = "INFO", name: str = "", fmt: str = TEXT) -> None:
    """Log to stderr in ``fmt`` (text or json) at ``level``, every line redacted."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, RedisLogShipper):
            handler.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(name) if fmt == JSON else text_formatter(name))
    handler.addFilter(TaskFields())
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    install_log_redaction(root)


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
