"""The one task every system runs: increment one Redis counter (``bench:count``).

Each worker process opens its own connection (hiredis parser when installed) from
``$BENCH_REDIS_URL`` on first use, so every system pays exactly one round trip per task.
"""
from __future__ import annotations

import os

import redis

COUNTER = "bench:count"
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


def bump() -> int:
    return client().incr(COUNTER)


def symphony_task(ctx) -> None:
    """Symphony handler (``bench.noop:symphony_task``)."""
    bump()


def plain_task(*_args, **_kwargs) -> None:
    """RQ's job function (``bench.noop.plain_task``)."""
    bump()


def slow_task(ctx) -> None:
    """For the reclaim case: record when (and where) each attempt starts, then hang on the first."""
    import time

    client().hset("bench:starts", str(ctx.attempt), f"{time.time():.6f}|{os.getpid()}")
    if ctx.attempt == 1:
        time.sleep(float(ctx.params.get("hang", 60)))


MARKS = "bench:marks"


def mark(item: str) -> None:
    """The latency case's task: record when it started (wall clock), first thing."""
    import time

    at = time.time()
    client().rpush(MARKS, f"{item} {at:.6f}")


def symphony_mark(ctx) -> None:
    """Symphony handler (``bench.noop:symphony_mark``)."""
    mark(ctx.item)
