"""The floor any at-least-once Redis queue pays: BLMOVE into a processing list, run, LREM.

Messages are ``<stage>:<item>`` in one list; with several stages, finishing a task pushes the
item's next stage and removes the finished message in one MULTI/EXEC (so the hand-over is
reliable too). Three round trips a task: BLMOVE, the task's INCR, the LREM (or MULTI/EXEC).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import redis

from bench.noop import bump, mark

QUEUE = "bench:minimal"


def prefill(client: redis.Redis, items: int, stages: int) -> None:
    batch = 5000
    for start in range(0, items, batch):
        client.rpush(QUEUE, *(f"1:{n}" for n in range(start, min(items, start + batch))))


def work(url: str, stages: int, marking: bool = False) -> None:
    client = redis.Redis.from_url(url)
    processing = f"{QUEUE}:processing:{os.getpid()}"
    while True:
        msg = client.blmove(QUEUE, processing, 1.0, "LEFT", "RIGHT")
        if msg is None:
            continue
        stage, _, item = msg.partition(b":")
        if marking:
            mark(item.decode())
        else:
            bump()
        n = int(stage)
        if n < stages:
            with client.pipeline(transaction=True) as pipe:
                pipe.rpush(QUEUE, b"%d:%s" % (n + 1, item))
                pipe.lrem(processing, 1, msg)
                pipe.execute()
        else:
            client.lrem(processing, 1, msg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=os.environ.get("BENCH_REDIS_URL"))
    p.add_argument("--stages", type=int, default=1)
    p.add_argument("--task", choices=("bump", "mark"), default="bump")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    work(args.url, args.stages, args.task == "mark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
