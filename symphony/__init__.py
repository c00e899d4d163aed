"""Symphony: a Redis-backed orchestrator for multi-stage data pipelines.

``symphony.engine`` holds all the Redis logic (no UI), ``symphony.workers`` the headless
``symphony-worker``, ``symphony.console`` the operator front ends (the ``symphony`` CLI and the
``symphony-tui`` console). ``python -m symphony`` is the ``symphony`` CLI.
"""
from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("redis-symphony")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
