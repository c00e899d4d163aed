"""Redis that can destroy Symphony's state: an evicting maxmemory-policy, a server out of memory,
keys that vanish one kind at a time, late reports for a purged or replaced session, and the
time of outcome records. Each case that configures the server runs on a private one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from symphony.engine import EmbeddedRedis, Engine, load_session, resolve_redis
from symphony.engine.initialize import initialize_session
from tests.helpers import ROOT, WorkerRun, wait_until, worker_env, write_pipeline, write_session


@pytest.fixture
def private(tmp_path):
    servers = []

    def start(*args: str) -> EmbeddedRedis:
        directory = tmp_path / f"redis{len(servers)}"
        directory.mkdir()
        server = EmbeddedRedis(directory=str(directory), args=args)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.close()


def symphony(url: str, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=cwd,
                          env=worker_env(url, **env), capture_output=True, text=True, timeout=120)


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def session_file(tmp_path: Path, items, *, name: str = "s1", handler: str = "tests.handlers:ok",
                 params: dict | None = None, stages: int = 1) -> Path:
    defs = [{"name": f"st{k}", "pool": "p", "handler": handler, "output": "{root}/{session}/{stage}/{item}.json",
             "timeout": 60, "max_attempts": 3, "retry_backoff": 0.05, "params": params or {}} for k in range(stages)]
    write_pipeline(tmp_path / "pipe.yaml", defs)
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", items, root=str(tmp_path / "data"))


def init(url: str, path: Path):
    with Engine(resolve_redis(url)) as engine:
        return initialize_session(engine, load_session(path))


def stats(c: redis.Redis, session: str = "s1") -> dict[str, int]:
    return {k: int(v) for k, v in c.hgetall(f"symphony:stats:{session}").items()}


# --- eviction policies ----------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_a_worker_refuses_an_evicting_policy_in_one_line_and_claims_nothing(private, tmp_path, policy):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", policy)
    init(server.url, session_file(tmp_path, ["a", "b"]))
    worker = WorkerRun(server.url, "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 3, worker.output()
    log = worker.output()
    refusals = [line for line in log.splitlines() if f"maxmemory-policy {policy}" in line]
    assert len(refusals) == 1 and "set maxmemory-policy noeviction" in refusals[0] and "--accept-eviction" in refusals[0]
    assert "Traceback" not in log
    c = client(server.url)
    assert c.llen("st0:s1") == 2 and not stats(c).get("st0|running")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_accept_eviction_runs_the_workers_anyway_and_says_so(private, tmp_path, how):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    init(server.url, session_file(tmp_path, ["a", "b"]))
    if how == "flag":
        worker = WorkerRun(server.url, "--burst", "--accept-eviction", log_dir=tmp_path)
    else:
        worker = WorkerRun(server.url, "--burst", log_dir=tmp_path,
                           env=worker_env(server.url, SYMPHONY_ACCEPT_EVICTION="1"))
    assert worker.wait(60) == 0, worker.output()
    assert "running anyway (--accept-eviction)" in worker.output()
    assert stats(client(server.url))["st0|done"] == 2


def test_a_policy_changed_under_a_running_worker_stops_it_after_the_reconnect(private, tmp_path):
    server = private()
    path = session_file(tmp_path, ["a"])
    worker = WorkerRun(server.url, "--processes", "2", log_dir=tmp_path)
    init(server.url, path)
    c = client(server.url)
    wait_until(lambda: stats(c).get("st0|done") == 1, message="the first task done")
    c.config_set("maxmemory", "64mb")
    c.config_set("maxmemory-policy", "allkeys-lfu")
    c.client_kill_filter(_type="normal", skipme=True)  # every worker connection drops: they reconnect
    assert worker.wait(60) == 3, worker.output()
    assert "maxmemory-policy allkeys-lfu" in worker.output() and "this worker stops claiming" in worker.output()


def test_status_and_its_json_say_workers_refuse_an_evicting_policy(private):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl")
    out = symphony(server.url, "status")
    assert out.returncode == 0
    assert "PROBLEM: maxmemory-policy is volatile-ttl" in out.stdout, out.stdout
    assert "workers refuse to run under it unless started with --accept-eviction" in out.stdout
    data = json.loads(symphony(server.url, "status", "--json").stdout)["server"]
    assert data["workers_refuse"] is True and "set maxmemory-policy noeviction" in data["policy_refusal"]
    plain = json.loads(symphony(private().url, "status", "--json").stdout)["server"]
    assert plain["workers_refuse"] is False and plain["policy_refusal"] is None


# --- out of memory (noeviction at its limit) --------------------------------------------------------

def oom_errors(c: redis.Redis) -> int:
    return int(c.info("errorstats").get("errorstat_OOM", {}).get("count", 0))


def test_out_of_memory_is_said_once_in_words_and_nothing_is_lost(private, tmp_path):
    server = private("--maxmemory-policy", "noeviction")
    c = client(server.url)
    init(server.url, session_file(tmp_path, [f"i{n}" for n in range(40)], params={"seconds": 0.05}))
    worker = WorkerRun(server.url, "--processes", "2", log_dir=tmp_path)
    wait_until(lambda: stats(c).get("st0|done", 0) >= 3, message="some tasks done")
    c.config_set("maxmemory", "1")  # every write is refused from now on
    wait_until(lambda: oom_errors(c) >= 12, timeout=60, message="the workers to try again and again")
    out = symphony(server.url, "status")
    assert out.returncode == 3 and "Redis is out of memory" in out.stderr, out.stdout + out.stderr
    log = worker.output()
    said = [line for line in log.splitlines() if "Redis is out of memory" in line]
    assert 1 <= len(said) <= 2 and "nothing is lost" in said[0], log  # once per worker process
    assert "Traceback" not in log and "Redis unavailable" not in log and "is back after" not in log, log
    c.config_set("maxmemory", "0")
    wait_until(lambda: stats(c).get("st0|done", 0) == 40, timeout=60, message="every item done after the memory came back")
    wait_until(lambda: "accepts writes again" in worker.output(), message="the worker to say it resumed")
    counts = stats(c)
    assert counts["st0|running"] == 0 and counts["st0|completed"] == 40 and c.hlen("symphony:live:s1") == 0


def test_the_console_header_says_out_of_memory_and_the_eta_stalls(private, tmp_path):
    import asyncio

    from symphony.console.backend import Backend
    from tests.console_helpers import RecordingApp, text_of, until

    server = private("--maxmemory-policy", "noeviction")
    init(server.url, session_file(tmp_path, ["a", "b"]))
    client(server.url).config_set("maxmemory", "1")
    engine = Engine(resolve_redis(server.url), socket_timeout=3.0)
    app = RecordingApp(Backend(engine, tasks_dir=tmp_path), refresh=0.2, export_dir=tmp_path / "exports")

    async def main() -> None:
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await until(pilot, lambda: "Redis out of memory" in text_of(app.header), message="the header")
                head = text_of(app.header)
                assert "● connected" not in head and "refuses writes" in head
        finally:
            app.backend.close()

    asyncio.run(main())


def test_the_console_header_says_the_policy_can_evict(private, tmp_path):
    import asyncio

    from symphony.console.backend import Backend
    from tests.console_helpers import RecordingApp, text_of, until

    server = private("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    engine = Engine(resolve_redis(server.url), socket_timeout=3.0)
    app = RecordingApp(Backend(engine, tasks_dir=tmp_path), refresh=0.2, export_dir=tmp_path / "exports")

    async def main() -> None:
        try:
            async with app.run_test(size=(200, 48)) as pilot:
                await until(pilot, lambda: "allkeys-lru" in text_of(app.header), message="the header")
                assert "workers refuse to run" in text_of(app.header)
        finally:
            app.backend.close()

    asyncio.run(main())
