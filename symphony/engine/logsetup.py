"""Log lines of every Symphony process, configured from ``--log-level`` and ``--log-format``.

``text``: ``2026-06-01 10:15:02 INFO    [name] message``, dated so that a log kept for days can be
read. ``json``: one object a line, ``{"time": "2026-06-01T10:15:02.123Z", "level": "INFO",
"logger": "symphony.worker", "process": "name", "worker": "name", "session": null, "stage": null,
"item": null, "attempt": null, "message": "..."}`` (plus ``"exception"`` with the traceback), for
log collectors: every line of every process has the same fields; a worker fills ``worker`` with
its id and the others with its running task, any other process ``worker`` with its name. Every
handler redacts secrets before formatting.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from .redaction import install_log_redaction

TEXT_DATE = "%Y-%m-%d %H:%M:%S"
# fields a process's own filter may add to its records (a worker: its id and its running task)
RECORD_FIELDS = ("worker", "session", "stage", "item", "attempt")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (UTC time with milliseconds)."""

    def __init__(self, name: str = ""):
        super().__init__()
        self.name = name

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        data = {"time": stamp, "level": record.levelname, "logger": record.name}
        if self.name:
            data["process"] = self.name
        for key in RECORD_FIELDS:  # on every line, null where they mean nothing (the exporter has no task)
            data[key] = getattr(record, key, (self.name or None) if key == "worker" else None)
        data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already formatted (and redacted) by the redacting filter
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def log_formatter(fmt: str = "text", name: str = "") -> logging.Formatter:
    """The formatter of ``--log-format`` (``text`` or ``json``); ``name`` tags each line."""
    if fmt == "json":
        return JsonFormatter(name)
    prefix = f"[{name}] " if name else ""
    return logging.Formatter(f"%(asctime)s %(levelname)-7s {prefix}%(message)s", TEXT_DATE)


def configure_logging(level: str = "WARNING", fmt: str = "text", *, name: str = "",
                      handler: logging.Handler | None = None) -> None:
    """Send the root logger to ``handler`` (default: stderr) at ``level``, formatted as ``fmt``,
    with secrets redacted. Replaces handlers configured before."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = handler or logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(fmt, name))
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.WARNING))
    install_log_redaction(root)
