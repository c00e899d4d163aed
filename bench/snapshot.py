"""Case 4: the status snapshot's cost, and how it scales with the number of queues.

Builds S sessions x 4 stages (a few items queued in each) and W workers through the engine's
own API (``register_session``, ``enqueue``, heartbeats), then times ``Engine.snapshot()`` and
counts its round trips with a connection that counts every request it sends (a pipeline is
one). Beside it, the way a dashboard without a registry finds queues: ``SCAN`` (cursor by
cursor, ``TYPE list``) or ``KEYS``, then ``LLEN`` each; its round trips grow with the keyspace.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import redis

from .common import Server

STAGES = ("b1", "b2", "b3", "b4")


class CountingConnection(redis.Connection):
    """A redis-py connection that counts the requests it sends (one per command or pipeline)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


def counting_client(url: str) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection, decode_responses=True)
    return redis.Redis(connection_pool=pool)


def build(server: Server, *, sessions: int, workers: int, items: int = 3) -> float:
    from symphony.engine import Engine, Handler, Pipeline, SessionRecord, Stage

    server.reset()
    t = time.perf_counter()
    pipeline = Pipeline("snap", tuple(Stage(s, Handler("python", target="bench.noop:symphony_task"), pool="bench")
                                      for s in STAGES))
    with Engine.from_url(server.url) as engine:
        for n in range(sessions):
            name = f"snap-{n:05d}"
            engine.register_session(SessionRecord(name=name, pipeline=pipeline, root="/nonexistent"), items=items)
            for stage in STAGES:  # a few items in every queue, as if mid-run
                engine.enqueue(name, stage, [(f"{stage}-{i}", None) for i in range(items)])
            with engine.client.pipeline(transaction=False) as pipe:  # each job's own key/values (ctx.kv)
                for stage in STAGES:
                    for i in range(items):
                        pipe.hset(engine.keys.job(name, stage, f"{stage}-{i}"), "progress", "0.5")
                pipe.execute()
        for w in range(workers):
            link = engine.worker_link(f"snapw-{w:04d}", list(STAGES))
            link.beat(5.0, 12.5, {"name": f"snapw-{w:04d}", "host": "bench", "pid": 1000 + w, "pool": "bench",
                                  "roles": ",".join(STAGES), "state": "idle", "current": "", "done": 0,
                                  "cpu": 1.0, "mem": 2.0, "rss": 50_000_000, "host_cpu": 10.0, "host_mem": 40.0})
    return time.perf_counter() - t


def time_symphony(server: Server, reps: int) -> dict[str, Any]:
    from symphony.engine import Engine, resolve_redis

    client = counting_client(server.url)
    engine = Engine(resolve_redis(server.url), client=client)
    try:
        engine.snapshot()  # connect, warm caches
        times, trips = [], []
        for _ in range(reps):
            before = CountingConnection.sent
            t = time.perf_counter()
            snap = engine.snapshot()
            times.append(time.perf_counter() - t)
            trips.append(CountingConnection.sent - before)
    finally:
        engine.close()
    return {"ms": round(statistics.median(times) * 1000, 2), "round_trips": max(trips), "queues": len(snap.queues),
            "workers": len(snap.workers), "sessions": len(snap.sessions)}


def scan_status(client: redis.Redis, *, use_keys: bool = False, count: int = 1000) -> dict[str, Any]:
    """The same status without a registry: find the queues, the counters and the workers by
    pattern (``SCAN`` cursor by cursor, or ``KEYS``), then read them all in one pipeline."""
    def find(pattern: str, kind: str | None = None) -> list[str]:
        if use_keys:
            found = list(client.keys(pattern))
            if kind is None:
                return found
            with client.pipeline(transaction=False) as pipe:
                for key in found:
                    pipe.type(key)
                kinds = pipe.execute()
            return [k for k, t in zip(found, kinds) if t == kind]
        found, cursor = [], 0
        while True:
            cursor, batch = client.scan(cursor, match=pattern, count=count, _type=kind)
            found.extend(batch)
            if cursor == 0:
                return found

    lists = find("*:*", "list")
    stats = find("symphony:stats:{*}")
    workers = find("{symphony}:worker:*")
    with client.pipeline(transaction=False) as pipe:
        for key in lists:
            pipe.llen(key)
        for key in stats + workers:
            pipe.hgetall(key)
        replies = pipe.execute()
    return {"lists": dict(zip(lists, replies)), "stats": len(stats), "workers": len(workers)}


def time_scan(server: Server, reps: int, *, use_keys: bool = False) -> dict[str, Any]:
    client = counting_client(server.url)
    try:
        scan_status(client, use_keys=use_keys)
        times, trips = [], []
        for _ in range(reps):
            before = CountingConnection.sent
            t = time.perf_counter()
            found = scan_status(client, use_keys=use_keys)["lists"]
            times.append(time.perf_counter() - t)
            trips.append(CountingConnection.sent - before)
    finally:
        client.close()
    return {"ms": round(statistics.median(times) * 1000, 2), "round_trips": max(trips), "lists_found": len(found)}


def run_target(server: Server, *, sessions: int, workers: int, reps: int) -> dict[str, Any]:
    built = build(server, sessions=sessions, workers=workers)
    out = {"sessions": sessions, "stages": len(STAGES), "workers": workers, "build_s": round(built, 2),
           "keys": server.client.dbsize(), "symphony": time_symphony(server, reps)}
    return out


def run_scaling(server: Server, *, queue_counts: list[int], workers: int, reps: int) -> list[dict[str, Any]]:
    rows = []
    for queues in queue_counts:
        build(server, sessions=max(1, queues // len(STAGES)), workers=workers)
        rows.append({"queues": queues, "keys": server.client.dbsize(), "symphony": time_symphony(server, reps),
                     "scan": time_scan(server, reps), "keys_cmd": time_scan(server, reps, use_keys=True)})
    return rows
