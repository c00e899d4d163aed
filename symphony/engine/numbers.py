"""Numbers read back from Redis hashes and streams, where a field may be missing or not a number."""
from __future__ import annotations

from typing import Any


def optional_number(value: Any, kind: type = float) -> Any:
    """``value`` as a ``kind`` (``float`` or ``int``; an int field written as ``"3.0"`` reads as 3),
    or None when it is missing, empty or not a number."""
    if value in (None, ""):
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
