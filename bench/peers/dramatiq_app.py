"""Dramatiq with its Redis broker; several stages are a ``pipeline``, Dramatiq's own way."""
from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.noop import bump

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(n: int = 0) -> None:
    bump()


def prefill(url: str, items: int, stages: int) -> None:
    for n in range(items):
        if stages == 1:
            noop.send(n)
        else:
            dramatiq.pipeline([noop.message_with_options(args=(n,), pipe_ignore=True) for _ in range(stages)]).run()
