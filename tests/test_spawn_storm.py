"""A spawn storm on an overloaded machine: many ``symphony-worker`` processes started at once on
the 2-core machine while CPU hogs run; every one of them stays alive, so none may be declared
lost (a ``worker_lost`` event), whatever the scheduler made them wait.

The test judges only what Redis says (its events, its workers' leases, its own clock); it polls
with deadlines and never times anything with the test's clock."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis as redis_py

from symphony.engine import Engine, Keys, initialize_session, load_session, resolve_redis
from tests.helpers import ROOT, wait_until, worker_env, write_pipeline, write_session

STORM = 40  # symphony-worker processes started at once
HOGS = 2
HOG = "while True: pass"


def server_ms(r) -> int:
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


@pytest.mark.slow
def test_a_spawn_storm_on_an_overloaded_machine_loses_no_live_worker(own_redis, tmp_path):
    keys = Keys()
    r = redis_py.Redis.from_url(own_redis.url, decode_responses=True)
    engine = Engine(resolve_redis(own_redis.url))
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "p", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json", "timeout": 60}])
    items = [f"i{n:04d}" for n in range(STORM * 5)]
    initialize_session(engine, load_session(write_session(tmp_path / "s.yaml", "storm", "pipe.yaml", items,
                                                          root=str(tmp_path / "data"))))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True) for _ in range(HOGS)]
    env = worker_env(own_redis.url)
    workers: list[subprocess.Popen] = []
    logs = []
    try:
        for n in range(STORM):  # all at once: each a supervisor that forks its worker process
            log = open(tmp_path / f"storm-{n}.log", "wb")
            logs.append(log)
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "symphony.workers", "--processes", "1", "--heartbeat", "1",
                 "--pool", "p", "--name", f"storm{n}"],  # the default idle wait (2 s): longer than a beat
                cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

        def detail() -> str:
            return f" ({r.zcard(keys.workers)} of {STORM} registered, {len(lost())} lost)"

        def lost() -> list[dict]:
            return [f for _, f in r.xrange(keys.events) if f.get("kind") == "worker_lost"]

        lapses: list[tuple[str, int]] = []

        def look() -> None:
            """Is any registered worker's lease past its expiry now, on Redis' clock? (The grace
            window after a silence could hide a lapse from the reaper: this sees it anyway.)"""
            with r.pipeline(transaction=True) as pipe:
                pipe.time()
                pipe.zrange(keys.workers, 0, 0, withscores=True)
                (sec, usec), earliest = pipe.execute()
            now = sec * 1000 + usec // 1000
            if earliest and earliest[0][1] < now:
                lapses.append((earliest[0][0], now - int(earliest[0][1])))

        def watching(condition):
            def check():
                look()
                return condition()
            return check

        wait_until(watching(lambda: r.zcard(keys.workers) >= STORM), timeout=240, interval=0.05,
                   message="every worker process to beat" + detail())
        # the work gets done, and then some more leases run out, on Redis' clock
        wait_until(watching(lambda: int(r.hget(keys.stats("storm"), "work|completed") or 0) >= len(items)),
                   timeout=240, interval=0.05, message="the storm's tasks")
        until = server_ms(r) + 5 * 2500  # five leases of 2.5 s
        wait_until(watching(lambda: server_ms(r) >= until), timeout=120, interval=0.05, message="five more leases")
        assert not lapses, f"{len(lapses)} looks found a live worker's lease run out (worker, ms late): {lapses[:10]}"
        assert all(w.poll() is None for w in workers), "a worker exited during the storm"
        assert not lost(), f"live workers declared lost: {lost()}"
        assert r.zcard(keys.workers) == STORM
    finally:
        for hog in hogs:
            os.killpg(hog.pid, signal.SIGKILL)
            hog.wait(timeout=10)
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait(timeout=10)
        for log in logs:
            log.close()
        engine.close()
        r.close()
