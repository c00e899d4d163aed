"""Case 6: reclaim latency after SIGKILL, until the task runs again elsewhere.

Two worker "hosts" (each a ``symphony-worker`` supervisor with one process) serve one stage;
one task that hangs on its first attempt is enqueued. When it has started (the task records its
start time and pid in Redis), after a random part of a heartbeat, the harness SIGKILLs:

* ``host``: the whole process group running it (supervisor and worker: a VM that vanished).
  The other host's heartbeat sees the lease lapse and reclaims the task;
* ``process``: only the worker process (its supervisor sees it die and reclaims at once).

Latency = start of attempt 2 (recorded by the task) - moment of the kill, also in heartbeat
intervals. RQ's and Celery's defaults, from their documentation, are listed beside it.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import os
import random
import signal
import time
from typing import Any

import psutil
import yaml

from .common import Group, Server, bench_env, temp_dir, wait_for

# What RQ and Celery do by default when the worker running a task is SIGKILLed (see docs/benchmarks.md).
PEER_DEFAULTS = [
    {"system": "rq", "reclaim": "never re-run by default: the job stays in StartedJobRegistry until its "
                                "execution TTL lapses (job timeout 180 s + 60 s), then a worker's maintenance "
                                "(every 10 min) moves it to FailedJobRegistry (re-queued only with Retry)",
     "seconds": None, "docs": ["https://python-rq.org/docs/job_registries/", "https://python-rq.org/docs/workers/",
                               "https://redis.io/docs/latest/integrate/rq/"]},
    {"system": "celery", "reclaim": "lost by default (task_acks_late=False: early acknowledgement, the message is "
                                    "not redelivered); with acks_late the Redis broker redelivers it after "
                                    "visibility_timeout = 1 hour",
     "seconds": 3600, "docs": ["https://docs.celeryq.dev/en/stable/glossary.html",
                               "https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late",
                               "https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html"
                               "#visibility-timeout"]},
]


def _write(workdir: str) -> str:
    base = temp_dir("symphony-bench-reclaim-") if not workdir else workdir
    os.makedirs(os.path.join(base, "pipelines"), exist_ok=True)
    with open(os.path.join(base, "pipelines", "rc.yaml"), "w") as fh:
        yaml.safe_dump({"pipeline": "rc", "stages": [{"name": "rc", "pool": "bench", "handler": "bench.noop:slow_task",
                                                      "timeout": 600, "max_attempts": 3,
                                                      "params": {"hang": 120}}]}, fh)
    path = os.path.join(base, "rc.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump({"session": "bench-rc", "pipeline": "pipelines/rc.yaml", "root": "data",
                        "items": ["only"]}, fh)
    return path


def _starts(server: Server) -> dict[int, tuple[float, int]]:
    out = {}
    for attempt, raw in server.client.hgetall("bench:starts").items():
        at, _, pid = raw.partition("|")
        out[int(attempt)] = (float(at), int(pid))
    return out


def run_one(server: Server, *, mode: str, heartbeat: float, seed: int) -> dict[str, Any]:
    from symphony.engine import Engine, initialize_session, load_session

    server.reset()
    workdir = temp_dir("symphony-bench-reclaim-")
    path = _write(workdir)
    env = bench_env(server.url)
    cmd = ["-m", "symphony.workers", "--roles", "rc", "-n", "1", "--heartbeat", str(heartbeat), "--log-level", "WARNING"]
    import sys

    hosts = [Group([[sys.executable, *cmd, "--name", name]], env, workdir) for name in ("hostA", "hostB")]
    try:
        wait_for(lambda: server.client.zcard(K.workers) >= 2, 60, 0.02, "both workers to beat")
        with Engine.from_url(server.url) as engine:
            initialize_session(engine, load_session(path))
        first = wait_for(lambda: _starts(server).get(1), 60, 0.005, "the task to start")
        pid = first[1]
        victim = next(h for h in hosts if any(p.pid == pid for p in h.tree()))
        time.sleep(random.Random(seed).uniform(0, heartbeat))
        killed_at = time.time()
        if mode == "host":
            os.killpg(victim.procs[0].pid, signal.SIGKILL)
        else:
            psutil.Process(pid).kill()
        again = wait_for(lambda: _starts(server).get(2), 120, 0.005, "the task to run again")
        latency = again[0] - killed_at
    finally:
        for h in hosts:
            h.stop(grace=1.0)
    return {"mode": mode, "heartbeat_s": heartbeat, "lease_s": 2.5 * heartbeat, "latency_s": round(latency, 3),
            "heartbeats": round(latency / heartbeat, 2), "elsewhere": again[1] != pid}
