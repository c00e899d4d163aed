"""Rates and limits as the spec files write them: ``rate: 120/min``, ``max_running: 8``,
``priority: 10``."""
from __future__ import annotations

import re
from typing import Any

MAX_PRIORITY = 1000
MAX_LIMIT = 1_000_000
RATE_UNITS = {"s": 1000, "sec": 1000, "second": 1000, "m": 60_000, "min": 60_000, "minute": 60_000,
              "h": 3_600_000, "hour": 3_600_000}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(?:(\d+)\s*)?([a-z]+)\s*$")


def parse_rate(text: Any) -> tuple[int, int]:
    """``120/min``, ``5/s``, ``1000/hour``, ``10/30s`` -> (count, period in ms); ValueError with
    the reason otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"rate is written like 120/min or 5/s, not {text!r}")
    m = _RATE.match(text.lower())
    if not m or m.group(3) not in RATE_UNITS:
        raise ValueError(f"rate is written like 120/min, 5/s or 1000/hour, not {text!r}")
    count, per = int(m.group(1)), int(m.group(2) or 1) * RATE_UNITS[m.group(3)]
    if count < 1 or count > MAX_LIMIT or per < 1:
        raise ValueError(f"rate needs 1 to {MAX_LIMIT:,} tasks per period, not {text!r}")
    return count, per


def rate_text(count: int, per_ms: int) -> str:
    """(120, 60000) -> ``120/min``."""
    for unit, ms in (("hour", 3_600_000), ("min", 60_000), ("s", 1000)):
        if per_ms == ms:
            return f"{count}/{unit}"
    return f"{count}/{per_ms / 1000:g}s"
