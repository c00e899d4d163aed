"""Celery with its Redis broker, default settings (prefork pool, prefetch multiplier 4, early
acknowledgement); no result backend. Several stages are a ``chain``, Celery's own way."""
from __future__ import annotations

import os

from celery import Celery, chain

from bench.noop import bump

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                worker_redirect_stdouts=False)


@app.task(name="bench.noop")
def noop(n: int = 0) -> None:
    bump()


def prefill(url: str, items: int, stages: int) -> None:
    with app.producer_or_acquire() as producer:
        for n in range(items):
            if stages == 1:
                noop.apply_async((n,), producer=producer)
            else:
                chain(*(noop.si(n) for _ in range(stages))).apply_async(producer=producer)
