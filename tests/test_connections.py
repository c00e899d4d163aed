"""Connections a fleet holds: one per worker process (its loop, heart and log shipper take it in
turn), none for a supervisor between the times it needs Redis. Counted by the server itself
(``CLIENT LIST``, by client name) on a server of the test's own."""
from __future__ import annotations

import os
import signal

import pytest
import redis as redis_py

from symphony.engine import Keys
from tests.helpers import WorkerRun, wait_until


def connections(r) -> dict[str, int]:
    out: dict[str, int] = {}
    for client in r.client_list():
        name = client.get("name", "")
        if name.startswith(("symphony-worker:", "symphony-supervisor:")):
            out[name] = out.get(name, 0) + 1
    return out


def beats(r, keys: Keys) -> dict[str, int]:
    return {w: int(r.hget(keys.worker(w), "beat") or 0) for w in r.zrange(keys.workers, 0, -1)}


@pytest.mark.slow
def test_a_worker_process_holds_one_connection_and_its_supervisor_none(own_redis, tmp_path):
    keys = Keys()
    r = redis_py.Redis.from_url(own_redis.url, decode_responses=True)
    worker = WorkerRun(own_redis.url, "--processes", "3", "--roles", "idle", log_dir=tmp_path, heartbeat=0.3)
    try:
        wait_until(lambda: r.zcard(keys.workers) == 3, timeout=60, message="three worker processes")
        seen: dict[str, int] = {}

        def sample_until_three_more_beats(start: dict[str, int]) -> bool:
            for name, count in connections(r).items():
                seen[name] = max(seen.get(name, 0), count)
            now = beats(r, keys)
            # every process beat three times more (each beat ~ one turn of the shared connection
            # between the heart, the loop's blocking wait and the log shipper)
            return all(now.get(w, 0) >= start.get(w, 0) + 3 * 300 for w in start)

        start = beats(r, keys)
        wait_until(lambda: sample_until_three_more_beats(start), timeout=60, interval=0.05,
                   message="three more beats of every process")
        workers = {n: c for n, c in seen.items() if n.startswith("symphony-worker:")}
        assert len(workers) == 3 and max(workers.values()) == 1, seen
        assert not [n for n in seen if n.startswith("symphony-supervisor:")], seen

        # a child that crashes is reclaimed by its supervisor (which connects for it, then hangs up)
        victim = r.zrange(keys.workers, 0, 0)[0]
        os.kill(int(r.hget(keys.worker(victim), "pid")), signal.SIGKILL)
        wait_until(lambda: victim not in r.zrange(keys.workers, 0, -1) and r.zcard(keys.workers) == 3,
                   timeout=60, message="the crashed child reclaimed and replaced")
        wait_until(lambda: not [n for n in connections(r) if n.startswith("symphony-supervisor:")], timeout=30,
                   message="the supervisor to hang up after the reclaim")
        assert max(connections(r).values()) == 1
    finally:
        worker.stop()
        r.close()


def test_threads_sharing_the_connection_take_turns_through_an_outage():
    """redis-py gives back a connection that failed to connect from inside get_connection; the
    turn must still be given back once (given twice, a waiting thread's turn was skipped and it
    waited for ever: a worker that never came back after Redis restarted)."""
    import socket
    import threading

    from symphony.engine.config import resolve_redis
    from symphony.engine.connection import connect
    from symphony.engine.sharing import share_one_connection

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = share_one_connection(connect(resolve_redis(f"redis://127.0.0.1:{port}/0?cluster=no"),
                                          connect_timeout=0.2))
    failures: list[int] = []

    def hammer() -> None:
        for _ in range(30):
            try:
                client.ping()
            except redis_py.ConnectionError:
                failures.append(1)
            with client.pipeline() as pipe:  # and nested: a pipeline's command while WATCHing
                try:
                    pipe.watch("k")
                except redis_py.ConnectionError:
                    failures.append(1)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    import time

    deadline = time.monotonic() + 30
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread waited for ever for its turn"
    assert len(failures) == 3 * 60
    turns = client.connection_pool._turns
    assert turns._owner is None and turns._next == turns._serving
    assert client.connection_pool._created_connections <= 1
