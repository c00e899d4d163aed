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


def chaos(ctx) -> None:
    """One stage of the chaos pipeline: record this execution (stage, item, attempt, pid), check
    the previous stage's output is this item's, take ``seconds``, write an output naming the
    process that produced it (so the audit can tell which execution won)."""
    _mark(ctx, "ran")
    previous = ctx.read_input_json() if ctx.input else None
    if previous is not None and previous.get("item") != ctx.item:
        raise RuntimeError(f"input of {ctx.item} belongs to {previous.get('item')}")
    seconds = float(ctx.params.get("seconds", 0) or 0)
    if seconds:
        time.sleep(seconds)
    ctx.write_output_json({"item": ctx.item, "stage": ctx.stage, "attempt": ctx.attempt, "pid": os.getpid()})


def poison(ctx) -> None:
    """Items named ``crash-*`` always raise; ``hang-*`` sleep past any timeout; others are fine."""
    if ctx.item.startswith("crash"):
        raise RuntimeError(f"poison item {ctx.item} always crashes (attempt {ctx.attempt})")
    if ctx.item.startswith("hang"):
        _mark(ctx, "hung")
        time.sleep(3600)
    chaos(ctx)


def meta_kv(ctx) -> None:
    """Record the item's metadata as the handler saw it, and use the job's key/values."""
    _mark(ctx, "ran")
    ctx.kv.set("vines", ctx.meta.get("vines"))
    runs = ctx.kv.incr("runs")
    ctx.write_output_json({"item": ctx.item, "meta": dict(ctx.meta), "runs": runs, "kv": ctx.kv.all()})


def leak_secret(ctx) -> None:
    """A careless handler: records which secret variables it can see, then fails with an error
    that contains a secret (read from a file), to prove the error is masked everywhere."""
    import json

    os.makedirs(ctx.root, exist_ok=True)
    seen = sorted(k for k in os.environ if "PASSWORD" in k or "REDIS" in k or k.startswith("SYMPHONY_KEY"))
    with open(os.path.join(ctx.root, "handler-env.json"), "w") as fh:
        json.dump(seen, fh)
    with open(ctx.params["file"]) as fh:
        secret = fh.read().strip()
    print(f"about to fail with {secret}", flush=True)
    raise RuntimeError(f"Leaked credentials: could not log in as admin with {secret}")


def noop(ctx) -> None:
    """Nothing at all: a task as short as a task can be (prefetch kicks in)."""


def hostile(ctx) -> None:
    """Items say how to misbehave: ``exit-*`` raise SystemExit, ``interrupt-*`` KeyboardInterrupt,
    ``die-*`` end the process (os._exit), ``gil-*`` hold the GIL in a catastrophic regex far past
    any timeout; every other item is an ordinary chaos task."""
    import re
    import sys

    kind = ctx.item.split("-", 1)[0]
    if kind in ("exit", "interrupt", "die", "gil"):
        _mark(ctx, "hostile")
    if kind == "exit":
        sys.exit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt
    if kind == "die":
        os._exit(7)
    if kind == "gil":
        re.match(r"(a+)+$", "a" * int(ctx.params.get("gil_size", 32)) + "b")  # 4x longer per 2 characters
    chaos(ctx)


def see_secrets(ctx) -> None:
    """Write everything a handler can see of its own process: /proc/self/environ and cmdline,
    os.environ and sys.argv; then hang if asked (so a test can read this process's memory)."""
    import json
    import sys

    seen = {"environ": open("/proc/self/environ", "rb").read().decode("utf-8", "replace"),
            "cmdline": open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace"),
            "os.environ": dict(os.environ), "sys.argv": list(sys.argv), "pid": os.getpid()}
    with open(ctx.output, "w") as fh:
        json.dump(seen, fh)
    _mark(ctx, "saw")
    time.sleep(float(ctx.params.get("hang", 0)))


def handler_env(ctx) -> None:
    """Record the SYMPHONY_* variables the handler's process has."""
    ctx.write_output_json({k: v for k, v in os.environ.items() if k.startswith("SYMPHONY_")})


def chatty(ctx) -> None:
    """Log a line, print one, use the job store twice, then write what the store said."""
    ctx.log.warning("chatty says %s", ctx.item)
    print("chatty printed", ctx.item)
    ctx.kv.set("item", ctx.item)
    ctx.write_output_json({"item": ctx.kv.get("item"), "runs": ctx.kv.incr("runs")})


def slurm_kv(ctx) -> None:
    """Record which SLURM job ran this task in the job's key/values, then as ``ok``."""
    ctx.kv.set("slurm_job", os.environ.get("SLURM_JOB_ID", ""))
    ok(ctx)


def hang_in_slurm(ctx) -> None:
    """Hang while running inside a SLURM job (so a test can cancel or time out the job mid-task);
    finish at once anywhere else."""
    _mark(ctx, "started")
    if os.environ.get("SLURM_JOB_ID"):
        time.sleep(float(ctx.params.get("hang", 300)))
    ok(ctx)


def hang_listed(ctx) -> None:
    """Items in ``params.hang`` hang on their first attempt (so a test can kill the process that
    runs one); every other item, and later attempts, take ``seconds`` and succeed."""
    _mark(ctx, "started")
    if ctx.attempt == 1 and ctx.item in ctx.params.get("hang", []):
        time.sleep(3600)
    ok(ctx)


def kv_and_pid(ctx) -> None:
    """Record which process ran it, use the job store, fail the items listed in params.bad."""
    _mark(ctx, "ran")
    ctx.kv.set("seen", ctx.item)
    if ctx.item in ctx.params.get("bad", []):
        raise RuntimeError(f"boom for {ctx.item}")
    ctx.write_output_json({"item": ctx.item, "pid": os.getpid(), "kv": ctx.kv.get("seen"), "attempt": ctx.attempt})


def big_output(ctx) -> None:
    """Write ``size`` bytes (the storage tests kill a worker while this is being uploaded)."""
    size = int(ctx.params.get("size", 1 << 20))
    with open(ctx.output, "wb") as fh:
        block = (f"{ctx.item}:{ctx.attempt}:".encode() * 4096)[:65536]
        while size > 0:
            fh.write(block[:size])
            size -= len(block)


def where(ctx) -> None:
    """Write the root this worker sees and whether the input is there (the per-pool roots test)."""
    ctx.write_output_json({"root": ctx.root, "input": ctx.input, "input_exists": bool(ctx.input) and
                           os.path.exists(ctx.input)})


def broken_host(ctx) -> None:
    """Fails on a host whose environment is broken (a file BROKEN in its working directory), works elsewhere."""
    if os.path.exists("BROKEN"):
        raise RuntimeError("this host's environment is broken")
    ok(ctx)


def chaos_unless_broken(ctx) -> None:
    """The chaos handler, except on a host whose environment is broken (a file BROKEN in its
    working directory): there every task fails at once."""
    if os.path.exists("BROKEN"):
        raise RuntimeError("this host's environment is broken")
    chaos(ctx)
