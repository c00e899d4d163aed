"""Host metrics from real worker processes: every heartbeat carries host and process figures, and
Redis keeps one sample per host per bucket however many processes run on the host."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import socket
from collections import Counter

import pytest

from tests.helpers import WorkerRun, wait_until
from tests.test_worker import init, one_stage_session



def buckets(r, pool: str) -> Counter:
    """Samples per (bucket, host)."""
    return Counter(tuple(m.split("|")[:2]) for m in r.zrange(K.metric_series("hosts", pool), 0, -1))


@pytest.mark.slow
def test_three_processes_on_one_host_write_one_sample_per_bucket(engine, r, redis_url, tmp_path):
    worker = WorkerRun(redis_url, "--pool", "windows", "--processes", "3", "--metrics-interval", "1",
                       log_dir=tmp_path, heartbeat=0.25)
    try:
        wait_until(lambda: r.zcard(K.workers) == 3, message="three worker processes to beat")
        wait_until(lambda: len({b for b, _ in buckets(r, "windows")}) >= 4, timeout=30,
                   message="four buckets of host samples")
        counts = buckets(r, "windows")
        hosts = {h for _, h in counts}
        assert hosts == {socket.gethostname()}
        assert set(counts.values()) == {1}, f"duplicate samples for a host in a bucket: {counts}"
        # every heartbeat carries the host's and the process's own figures
        snap = engine.snapshot()
        assert len(snap.workers) == 3
        for w in snap.workers:
            assert w.host_cpu_percent is not None and 0 <= w.host_cpu_percent <= 100
            assert w.host_memory_percent is not None and 0 < w.host_memory_percent <= 100
            assert w.cpu_percent is not None and w.rss_bytes and w.rss_bytes > 1_000_000
            assert w.cpus and w.cpus >= 1
        assert {(w.host, w.pool) for w in snap.workers} == {(socket.gethostname(), "windows")}
        # the console's reader: one pool, one host, a point per bucket
        (pool,) = engine.scale_set_cpu()
        assert (pool.name, pool.source, pool.instances) == ("windows", "worker heartbeats", 1)
        assert pool.current is not None and len(pool.points) >= 4
        assert all(b - a >= 0.999 for (a, _), (b, _) in zip(pool.points, pool.points[1:]))
        (h,) = engine.host_cpu()
        assert h.host == socket.gethostname() and h.pool == "windows" and len(h.points) >= 4
    finally:
        worker.stop()


@pytest.mark.slow
def test_metrics_interval_zero_turns_the_history_off(engine, r, redis_url, tmp_path):
    worker = WorkerRun(redis_url, "--pool", "linux", "--processes", "1", "--metrics-interval", "0",
                       log_dir=tmp_path, heartbeat=0.25)
    try:
        def beat():
            ids = r.zrange(K.workers, 0, 0)
            return int(r.hget(K.worker(ids[0]), "beat") or 0) if ids else 0

        first = wait_until(beat, message="a heartbeat")
        wait_until(lambda: beat() > first + 500, message="a few more heartbeats")
        assert not r.exists(K.metric_series("hosts", "linux")) and engine.scale_set_cpu() == ()
    finally:
        worker.stop()


BURN = ("import time\n"
        "end = time.time() + float({seconds})\n"
        "while time.time() < end:\n"
        "    sum(i * i for i in range(10000))\n")


@pytest.mark.slow
def test_a_command_handler_cpu_counts_as_its_worker_cpu(engine, r, redis_url, tmp_path):
    session = one_stage_session(tmp_path, "", ["hot"], params={"seconds": 8},
                                command=["{python}", "-c", BURN.replace("{seconds}", "8")])
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path, heartbeat=0.3)
    try:
        def busy_cpu():
            snap = engine.snapshot()
            busy = [w for w in snap.workers if w.state == "busy" and w.cpu_percent is not None and w.cpus]
            # cpu_percent is a share of the whole host: the child burns about one core of `cpus`
            return busy and busy[0].cpu_percent * busy[0].cpus >= 25

        wait_until(busy_cpu, timeout=30, interval=0.1, message="the handler child's CPU in the worker's heartbeat")
    finally:
        worker.stop()
