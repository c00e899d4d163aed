"""RQ: the job function; a multi-stage item enqueues its next stage when it finishes."""
from __future__ import annotations

from bench.noop import bump

QUEUE = "bench"


def stage(n: int, stages: int) -> None:
    bump()
    if n < stages:
        from rq import Queue, get_current_job

        job = get_current_job()
        Queue(QUEUE, connection=job.connection).enqueue(stage, n + 1, stages)


def prefill(url: str, items: int, stages: int) -> None:
    import redis
    from rq import Queue

    queue = Queue(QUEUE, connection=redis.Redis.from_url(url))
    batch = 1000
    for start in range(0, items, batch):
        count = min(items, start + batch) - start
        queue.enqueue_many([Queue.prepare_data(stage, (1, stages)) for _ in range(count)])
