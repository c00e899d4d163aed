"""Symphony end to end on a real 3-master Redis Cluster: `symphony initialize`, `symphony status`
and `symphony-worker` processes drain a session; a master killed under running workers (the
one holding the session's slot, or the fleet's) is an outage the workers wait out, and once it
is back (its AOF) every item completes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from symphony.engine.keys import DEFAULT_KEYS
from tests.helpers import ROOT, WorkerRun, wait_until, worker_env, write_pipeline, write_session
from tests.redis_cluster import cluster_key_layout

pytestmark = [
    pytest.mark.cluster, pytest.mark.slow,
    pytest.mark.skipif(not cluster_key_layout(),
                       reason="needs the cluster key layout (every script's keys in one hash slot)"),
]


def symphony(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=str(cwd),
                          env=worker_env(url), capture_output=True, text=True, timeout=120)


def session_file(tmp_path: Path, items: int, seconds: float = 0.0) -> Path:
    stage = {"name": "work", "pool": "p", "output": "{root}/{session}/{stage}/{item}.json", "timeout": 60,
             "max_attempts": 3, "retry_backoff": 0.05, "handler": "tests.handlers:ok", "params": {"seconds": seconds}}
    write_pipeline(tmp_path / "pipe.yaml", [stage])
    return write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", [f"i{n}" for n in range(items)],
                         root=str(tmp_path / "data"))


def completed(client) -> int:
    return int(client.hget(DEFAULT_KEYS.stats("s1"), "work|completed") or 0)


def outputs(tmp_path: Path) -> list[str]:
    return sorted(p.stem for p in (tmp_path / "data" / "s1" / "work").glob("*.json"))


def test_initialize_status_and_a_burst_worker_drain_a_session_on_the_cluster(redis_cluster, cluster_url, tmp_path):
    session_file(tmp_path, 30)
    out = symphony(cluster_url, "initialize", "s1.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    status = symphony(cluster_url, "status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert snapshot["server"]["shards"] == 3
    assert [(q["role"], q["session"], q["queued"]) for q in snapshot["queues"]] == [("work", "s1", 30)]
    worker = WorkerRun(cluster_url, "--burst", "--processes", "2", log_dir=tmp_path, cwd=ROOT)
    try:
        assert worker.wait(120) == 0, worker.output()[-3000:]
        log = worker.output()
    finally:
        worker.stop()
    client = redis_cluster.client()
    try:
        assert completed(client) == 30
        assert outputs(tmp_path) == sorted(f"i{n}" for n in range(30))
    finally:
        client.close()
    assert "MOVED" not in log and "CROSSSLOT" not in log


@pytest.mark.parametrize("lost", ["session", "fleet"])
def test_a_master_killed_under_running_workers_is_waited_out_and_nothing_is_lost(own_cluster, tmp_path, lost):
    url = own_cluster.url
    session_file(tmp_path, 40, seconds=0.05)
    out = symphony(url, "initialize", "s1.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    key = DEFAULT_KEYS.queue("work", "s1") if lost == "session" else DEFAULT_KEYS.workers
    victim = own_cluster.nodes.index(own_cluster.node_for(key))
    worker = WorkerRun(url, "--processes", "2", log_dir=tmp_path, heartbeat=0.5, cwd=ROOT)
    client = own_cluster.client(socket_timeout=2, socket_connect_timeout=1)
    try:
        wait_until(lambda: completed(client) >= 5, timeout=60, message="progress")
        own_cluster.kill(victim)  # SIGKILL: its AOF (appendfsync always) keeps what it acknowledged
        wait_until(lambda: "Redis unavailable" in worker.output(), timeout=30, message="the workers to notice")
        own_cluster.restart(victim)
        client.close()
        client = own_cluster.client()
        wait_until(lambda: completed(client) >= 40, timeout=90, message="every item, after the master came back")
        assert outputs(tmp_path) == sorted(f"i{n}" for n in range(40))
        log = worker.output()
        assert "Redis is back" in log, log[-3000:]
        assert "MOVED" not in log and "CROSSSLOT" not in log
    finally:
        worker.stop()
        client.close()
