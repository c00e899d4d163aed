"""Symphony: a Redis-backed orchestrator for multi-stage data pipelines.

``symphony.engine`` holds all the Redis logic (no UI), ``symphony.workers`` the headless
``symphony-worker``, ``symphony.console`` the operator front ends (the ``symphony`` CLI and the
``symphony-tui`` console). ``python -m symphony`` is the ``symphony`` CLI.
"""
from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed distribution on first use (importlib.metadata
    costs tens of milliseconds, which every worker process and handler executor would pay)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("redis-symphony")
    except PackageNotFoundError:  # running from a checkout that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
