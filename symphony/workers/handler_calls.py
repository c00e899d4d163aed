"""Calling a stage's Python handler, shared by the executor and inline handlers: finding it by its
``module:function`` target, and saying in words what it raised.

Hostile handlers are expected: an exception whose ``__str__`` raises, a traceback that cannot be
formatted, streams that cannot be flushed. None of it may take the worker's report down."""
from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any, Callable

TRACE_CHARS = 4000  # the tail of a traceback that is kept


class Handlers:
    """The handlers of a process, each imported once, by its ``module:function`` target."""

    def __init__(self) -> None:
        self._callables: dict[str, Callable[..., Any]] = {}

    def resolve(self, target: str) -> Callable[..., Any]:
        fn = self._callables.get(target)
        if fn is None:
            module_name, _, func_name = target.partition(":")
            fn = getattr(importlib.import_module(module_name), func_name)
            if not callable(fn):
                raise TypeError(f"{target} is not callable")
            self._callables[target] = fn
        return fn


def describe(exc: BaseException) -> str:
    """``Type: message`` (or the type alone), even when the message cannot be read."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = "(its message could not be read)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def trace(exc: BaseException) -> str:
    """The traceback's last :data:`TRACE_CHARS` characters (the description when it cannot be made)."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-TRACE_CHARS:]
    except Exception:  # noqa: BLE001
        return describe(exc)


def flush_streams() -> None:
    """Flush what a handler printed; a stream it closed or replaced is passed over."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
