"""Handlers used by the tests' pipelines (importable by worker processes as ``tests.handlers``)."""
from __future__ import annotations

import os
import time


def _mark(ctx, what: str) -> None:
    """Record that something happened, as an empty file under <root>/markers (duplicates show)."""
    folder = os.path.join(ctx.root, "markers")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{what}-{ctx.stage}-{ctx.item}-{ctx.attempt}-{os.getpid()}")
    with open(path, "w"):
        pass


def ok(ctx) -> None:
    seconds = float(ctx.params.get("seconds", 0) or 0)
    if seconds:
        time.sleep(seconds)
    _mark(ctx, "ran")
    ctx.write_output_json({"item": ctx.item, "stage": ctx.stage, "attempt": ctx.attempt})


def fail_some(ctx) -> None:
    if ctx.item in ctx.params.get("bad", []):
        raise RuntimeError(f"boom for {ctx.item} on attempt {ctx.attempt}")
    ok(ctx)


def hang_first_attempt(ctx) -> None:
    """Hang on the first attempt (so the test can kill the worker mid-task), succeed after."""
    _mark(ctx, "started")
    if ctx.attempt == 1:
        time.sleep(float(ctx.params.get("hang", 60)))
    ok(ctx)


def hang(ctx) -> None:
    _mark(ctx, "started")
    time.sleep(float(ctx.params.get("hang", 60)))
    ok(ctx)


def noop(ctx) -> None:
    """Nothing at all: a task as short as a task can be (prefetch kicks in)."""
