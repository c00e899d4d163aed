"""Logging for workers: one line per event, secrets redacted."""
from __future__ import annotations

import logging
import sys

from symphony.engine import install_log_redaction


def setup_logging(level: str = "INFO", name: str = "") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[{name}] " if name else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {prefix}%(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    install_log_redaction(root)
