"""Logging for workers: one line per event (text or JSON, engine.logsetup), secrets redacted."""
from __future__ import annotations

from symphony.engine import configure_logging


def setup_logging(level: str = "INFO", name: str = "", fmt: str = "text") -> None:
    configure_logging(level, fmt, name=name)
