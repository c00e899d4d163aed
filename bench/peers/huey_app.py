"""Huey with its Redis storage (blocking reads), no result store; several stages are a
``then`` pipeline, Huey's own way."""
from __future__ import annotations

import os

from huey import RedisHuey

from bench.noop import bump, mark

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def noop(n: int = 0) -> int:
    bump()
    return n


@huey.task()
def mark_task(item: str) -> None:
    mark(item)


def prefill(url: str, items: int, stages: int) -> None:
    for n in range(items):
        sig = noop.s(n)
        for _ in range(stages - 1):
            sig = sig.then(noop)
        huey.enqueue(sig)
