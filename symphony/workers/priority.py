"""Lowering the CPU priority of worker processes (``os.nice`` on POSIX), on every platform."""
from __future__ import annotations

import logging
import os

import psutil

log = logging.getLogger("symphony.worker")


def lower_priority(increment: int) -> None:
    if increment <= 0:
        return
    try:
        if hasattr(os, "nice"):
            os.nice(increment)
        else:  # pragma: no cover - Windows
            psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS if increment < 15 else psutil.IDLE_PRIORITY_CLASS)
    except (OSError, psutil.Error) as exc:
        log.warning("could not lower the CPU priority: %s", exc)
