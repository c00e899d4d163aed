"""The batched floor: a minimal reliable loop that claims up to 32 tasks per round trip.

A Lua script moves up to 32 messages from the queue into this process's processing list (one
atomic step, like any at-least-once claim); the process runs them one by one (each task is the
same ``INCR`` every system runs), then removes the finished ones (``LREM``; with several
stages, ``RPUSH`` of the next stage too) and claims the next batch, all in one pipeline
(``MULTI``: the hand-over and the next claim are one atomic step). With the queue empty it
blocks on ``BLMOVE`` for one task. No heartbeats, no accounting, no recovery of a dead
process's list: the floor a batching queue pays on the same Redis.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import redis

from bench.noop import bump, mark

from .minimal import QUEUE, prefill  # noqa: F401 - the same messages as the one-at-a-time loop

BATCH = 32
CLAIM = """
local got = {}
for i = 1, tonumber(ARGV[1]) do
  local msg = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not msg then break end
  got[i] = msg
end
return got
"""


def work(url: str, stages: int, batch: int = BATCH, marking: bool = False) -> None:
    client = redis.Redis.from_url(url)
    processing = f"{QUEUE}:processing:{os.getpid()}"
    claim = client.register_script(CLAIM)
    sha = claim.sha
    client.script_load(CLAIM)
    done: list[bytes] = []
    while True:
        with client.pipeline(transaction=True) as pipe:
            for msg in done:
                stage, _, item = msg.partition(b":")
                n = int(stage)
                if n < stages:
                    pipe.rpush(QUEUE, b"%d:%s" % (n + 1, item))
                pipe.lrem(processing, 1, msg)
            pipe.evalsha(sha, 2, QUEUE, processing, batch)
            msgs = pipe.execute()[-1]
        done = []
        if not msgs:
            msg = client.blmove(QUEUE, processing, 1.0, "LEFT", "RIGHT")
            if msg is None:
                continue
            msgs = [msg]
        for msg in msgs:
            if marking:
                mark(msg.partition(b":")[2].decode())
            else:
                bump()
            done.append(msg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=os.environ.get("BENCH_REDIS_URL"))
    p.add_argument("--stages", type=int, default=1)
    p.add_argument("--task", choices=("bump", "mark"), default="bump")
    p.add_argument("--batch", type=int, default=BATCH)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    work(args.url, args.stages, args.batch, args.task == "mark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
