"""The base of every error Symphony raises on purpose (the spec files' and the engine's)."""
from __future__ import annotations


class SymphonyError(Exception):
    """Base class of every error Symphony raises on purpose."""
