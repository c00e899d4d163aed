"""Redis that can destroy Symphony's state: an evicting maxmemory-policy, a server out of memory,
keys that vanish one kind at a time, late reports for a purged or replaced session, and the
time of outcome records. Each case that configures the server runs on a private one."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

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
    return {k: int(v) for k, v in c.hgetall(K.stats(session)).items()}


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
    assert c.llen(K.queue("st0", "s1")) == 2 and not stats(c).get("st0|running")


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_policy_changed_under_a_running_worker_stops_it(private, tmp_path):
    server = private()
    path = session_file(tmp_path, ["a"])
    worker = WorkerRun(server.url, "--processes", "2", "--policy-check", "1", log_dir=tmp_path)
    init(server.url, path)
    c = client(server.url)
    wait_until(lambda: stats(c).get("st0|done") == 1, message="the first task done")
    c.config_set("maxmemory", "64mb")
    c.config_set("maxmemory-policy", "allkeys-lfu")
    c.client_kill_filter(_type="normal", skipme=True)  # every worker connection drops: they reconnect
    assert worker.wait(60) == 3, worker.output()
    assert "maxmemory-policy allkeys-lfu" in worker.output() and "this worker stops claiming" in worker.output()


@pytest.mark.slow
def test_a_worker_looks_at_the_policy_again_after_a_reconnect(private, tmp_path):
    server = private()
    init(server.url, session_file(tmp_path, ["a"]))
    worker = WorkerRun(server.url, "--processes", "1", "--policy-check", "3600", log_dir=tmp_path)
    c = client(server.url)
    wait_until(lambda: stats(c).get("st0|done") == 1, message="the task done (the worker then waits on its bell)")
    c.config_set("maxmemory", "64mb")
    c.config_set("maxmemory-policy", "volatile-lru")

    def dropped() -> bool:  # its connections drop (a blocked BLPOP fails): it reconnects, and looks again
        c.client_kill_filter(_type="normal", skipme=True)
        return worker.process.poll() is not None

    wait_until(dropped, timeout=60, interval=0.5, message="the worker to stop after a reconnect")
    assert worker.wait(10) == 3 and "maxmemory-policy volatile-lru" in worker.output()
    assert "Redis is back" in worker.output()


@pytest.mark.slow
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

ITEMS_OOM = 100


def oom_errors(c: redis.Redis) -> int:
    return int(c.info("errorstats").get("errorstat_OOM", {}).get("count", 0))


@pytest.mark.slow
def test_out_of_memory_is_said_once_in_words_and_nothing_is_lost(private, tmp_path):
    server = private("--maxmemory-policy", "noeviction")
    c = client(server.url)
    init(server.url, session_file(tmp_path, [f"i{n}" for n in range(ITEMS_OOM)], params={"seconds": 0.1}))
    worker = WorkerRun(server.url, "--processes", "2", log_dir=tmp_path)
    wait_until(lambda: stats(c).get("st0|done", 0) >= 3, message="some tasks done")
    c.config_set("maxmemory", "1")  # every write is refused from now on
    assert stats(c)["st0|done"] < ITEMS_OOM - 10, "the session must still be running"
    wait_until(lambda: oom_errors(c) >= 12, timeout=60, message="the workers to try again and again")
    out = symphony(server.url, "status")
    assert out.returncode == 3 and "Redis is out of memory" in out.stderr, out.stdout + out.stderr
    log = worker.output()
    said = [line for line in log.splitlines() if "Redis is out of memory" in line]
    assert 1 <= len(said) <= 2 and "nothing is lost" in said[0], log  # once per worker process
    assert "Traceback" not in log and "Redis unavailable" not in log and "is back after" not in log, log
    c.config_set("maxmemory", "0")
    wait_until(lambda: stats(c).get("st0|done", 0) == ITEMS_OOM, timeout=90,
               message="every item done after the memory came back")
    wait_until(lambda: "accepts writes again" in worker.output(), message="the worker to say it resumed")
    counts = stats(c)
    assert counts["st0|running"] == 0 and counts["st0|completed"] == ITEMS_OOM and c.hlen(K.live("s1")) == 0


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


# --- repair after a partial loss: one key kind at a time ------------------------------------------

ITEMS = [f"i{n}" for n in range(6)]
STAGES = ("st0", "st1")


@pytest.fixture
def two_stages(engine, tmp_path):
    """A two-stage session of six items, one task of which worker w1 holds (claimed by hand)."""
    path = session_file(tmp_path, ITEMS, stages=2)
    initialize_session(engine, load_session(path))
    link = engine.worker_link("w1", ["st0"])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    assert claimed is not None
    return path, link, claimed


def finish(link, claimed, tmp_path: Path):
    """Report the task held by hand done, with its output written as a worker would."""
    from symphony.engine import Finish, Outcome, OutcomeKind

    output = tmp_path / "data" / "s1" / claimed.role / f"{claimed.item}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("{}")
    return link.step(Finish(claimed, Outcome(OutcomeKind.DONE), next_stage="st1"), claim=False).finished


def repair(redis_url: str, path: Path, *args: str) -> subprocess.CompletedProcess:
    out = symphony(redis_url, "repair", "s1", "--file", str(path), *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def drain(redis_url: str, tmp_path: Path, r) -> None:
    """A burst worker runs what is left; every item is then done at every stage, each counted once."""
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(120) == 0, worker.output()
    counts = stats(r)
    for stage in STAGES:
        assert counts[f"{stage}|done"] == len(ITEMS), counts
        assert counts.get(f"{stage}|running", 0) == 0, counts
        for item in ITEMS:
            assert (tmp_path / "data" / "s1" / stage / f"{item}.json").is_file(), (stage, item)
    assert r.hlen(K.live("s1")) == 0
    assert "nothing to enqueue" in repair(redis_url, tmp_path / "s1.yaml").stdout  # nothing left to heal


def runs(tmp_path: Path, stage: str) -> dict[str, int]:
    """How often each item ran at ``stage`` (the handler's markers)."""
    seen: dict[str, int] = {}
    for marker in (tmp_path / "data" / "markers").glob(f"ran-{stage}-*"):
        item = marker.name.split("-")[2]
        seen[item] = seen.get(item, 0) + 1
    return seen


@pytest.mark.slow
def test_an_in_flight_list_lost_while_its_task_runs_is_enqueued_again_by_repair(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.inflight("s1", "w1"))
    assert finish(link, claimed, tmp_path) == "lost"  # its report finds it gone, and changes nothing
    plan = json.loads(repair(redis_url, path, "--dry-run", "--json").stdout)
    assert plan["lost"] == 1 and plan["in_progress"] == 5 and plan["to_enqueue"] == 1, plan
    out = repair(redis_url, path)
    assert "1 item(s) were in progress in Redis but their task message is gone" in out.stdout, out.stdout
    assert stats(r)["st0|running"] == 0  # the counter its lost report never took back
    drain(redis_url, tmp_path, r)


@pytest.mark.slow
def test_a_queue_lost_is_enqueued_again_by_repair(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.queue("st0", "s1"))
    plan = json.loads(repair(redis_url, path, "--dry-run", "--json").stdout)
    assert plan["lost"] == 5 and plan["in_progress"] == 1, plan
    repair(redis_url, path)
    assert r.llen(K.queue("st0", "s1")) == 5
    assert finish(link, claimed, tmp_path) == "done"
    drain(redis_url, tmp_path, r)
    assert max(runs(tmp_path, "st0").values()) == 1


@pytest.mark.slow
def test_a_live_hash_lost_is_restored_and_nothing_is_queued_twice(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.live("s1"))
    plan = json.loads(repair(redis_url, path, "--dry-run", "--json").stdout)
    assert plan["relisted"] == 6 and plan["to_enqueue"] == 0 and plan["in_progress"] == 6, plan
    repair(redis_url, path)
    assert r.hlen(K.live("s1")) == 6 and r.llen(K.queue("st0", "s1")) == 5
    assert finish(link, claimed, tmp_path) == "done"
    drain(redis_url, tmp_path, r)
    assert set(runs(tmp_path, "st0").values()) == {1} and set(runs(tmp_path, "st1").values()) == {1}


@pytest.mark.slow
def test_a_lost_session_definition_is_registered_again_and_its_queue_taken_back(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.session("s1"))
    out = repair(redis_url, path)
    assert "Redis did not know this session" in out.stdout and "clash" not in out.stdout + out.stderr
    assert r.hget(K.session("s1"), "state") == "active" and r.llen(K.queue("st0", "s1")) == 5
    assert finish(link, claimed, tmp_path) == "done"
    drain(redis_url, tmp_path, r)


@pytest.mark.slow
def test_a_lost_registry_is_rewritten_by_repair_and_pool_workers_find_their_stages(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.sessions, K.pools)
    assert "s1" not in symphony(redis_url, "sessions").stdout
    repair(redis_url, path)
    assert "s1" in r.hgetall(K.sessions) and "p" in r.hgetall(K.pools)
    assert finish(link, claimed, tmp_path) == "done"
    worker = WorkerRun(redis_url, "--burst", "--pool", "p", log_dir=tmp_path)
    assert worker.wait(120) == 0, worker.output()
    assert stats(r)["st1|done"] == len(ITEMS)


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["repair", "initialize"])
def test_registration_lost_but_queues_kept_resume_takes_them_back_without_duplicates(redis_url, r, two_stages,
                                                                                     tmp_path, verb):
    path, link, claimed = two_stages
    r.delete(K.session("s1"), K.sessions)
    if verb == "repair":
        repair(redis_url, path)
    else:
        out = symphony(redis_url, "initialize", "--resume", str(path))
        assert out.returncode == 0 and "clash" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert r.llen(K.queue("st0", "s1")) == 5
    assert finish(link, claimed, tmp_path) == "done"
    drain(redis_url, tmp_path, r)
    assert max(runs(tmp_path, "st0").values()) == 1


@pytest.mark.slow
def test_a_foreign_list_named_like_a_queue_needs_adopt(redis_url, r, tmp_path):
    path = session_file(tmp_path, ITEMS, stages=2)
    r.rpush(K.queue("st0", "s1"), "another tool's job")
    for verb in (("initialize", str(path)), ("repair", "s1", "--file", str(path))):
        out = symphony(redis_url, *verb)
        assert out.returncode != 0 and "queue name clash" in out.stdout + out.stderr and "--adopt" in out.stdout + out.stderr
        assert not r.exists(K.session("s1"))
    out = symphony(redis_url, "initialize", "--adopt", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert r.llen(K.queue("st0", "s1")) == 7 and r.hget(K.session("s1"), "state") == "active"


@pytest.mark.slow
def test_lost_counters_are_recounted_no_running_minus_one(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.stats("s1"))
    assert finish(link, claimed, tmp_path) == "done"
    assert stats(r)["st0|running"] == -1
    out = repair(redis_url, path)
    assert "recounted: st0|running" in out.stdout, out.stdout
    assert stats(r)["st0|running"] == 0
    drain(redis_url, tmp_path, r)


@pytest.mark.slow
def test_lost_done_bitmaps_are_recounted_from_the_disk(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    assert finish(link, claimed, tmp_path) == "done"
    drain(redis_url, tmp_path, r)
    r.delete(K.done("s1", "st0"), K.done("s1", "st1"), K.stats("s1"))
    repair(redis_url, path)
    assert stats(r)["st0|done"] == stats(r)["st1|done"] == len(ITEMS)
    assert r.bitcount(K.done("s1", "st1")) == len(ITEMS)


@pytest.mark.slow
def test_an_unregistered_worker_holding_tasks_gets_a_lease_and_is_reclaimed(redis_url, r, engine, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.zrem(K.workers, "w1")
    r.delete(K.worker("w1"))
    out = repair(redis_url, path)
    assert "1 unregistered worker(s) hold tasks" in out.stdout, out.stdout
    assert r.zscore(K.workers, "w1") is not None  # a lease: renewed if it lives, else reclaimed
    reports = engine.reclaim_worker("w1", force=True, reason="test")
    assert reports.requeued == 1 and r.llen(K.queue("st0", "s1")) == 6
    drain(redis_url, tmp_path, r)


# --- counts: late reports of a purged or replaced session, cancel then resume -------------------------

@pytest.mark.slow
def test_a_late_report_for_a_purged_and_reinitialized_session_changes_nothing(redis_url, r, engine, two_stages,
                                                                               tmp_path):
    path, link, claimed = two_stages
    out = symphony(redis_url, "purge", "s1", "--force", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    initialize_session(engine, load_session(path))  # a new session of the same name
    before = stats(r)
    assert finish(link, claimed, tmp_path) == "lost"  # it ran for the purged session
    assert stats(r) == before and r.llen(K.queue("st0", "s1")) == 6 and r.llen(K.queue("st1", "s1")) == 0 and r.hlen(K.live("s1")) == 6
    assert not r.exists(K.inflight("s1", "w1"))
    drain(redis_url, tmp_path, r)
    assert stats(r)["st0|completed"] == stats(r)["st1|completed"] == len(ITEMS)


def test_a_late_report_for_a_purged_session_recreates_nothing(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    assert symphony(redis_url, "purge", "s1", "--force", "--yes").returncode == 0
    assert finish(link, claimed, tmp_path) == "lost"
    assert not r.exists(K.stats("s1")) and not r.exists(K.live("s1")) and not r.exists(K.queue("st1", "s1"))
    assert not r.exists(K.done("s1", "st0"))


def test_a_reclaimed_task_of_a_purged_session_does_not_reach_the_new_one(redis_url, r, engine, two_stages, tmp_path):
    path, link, claimed = two_stages
    assert symphony(redis_url, "purge", "s1", "--force", "--yes").returncode == 0
    initialize_session(engine, load_session(path))
    before = stats(r)
    engine.reclaim_worker("w1", force=True, reason="test")
    assert r.llen(K.queue("st0", "s1")) == 6 and stats(r) == before


@pytest.mark.slow
def test_cancel_then_resume_counts_each_item_once(redis_url, r, engine, tmp_path):
    path = session_file(tmp_path, ITEMS, stages=2)
    initialize_session(engine, load_session(path))
    link = engine.worker_link("w1", ["st0"])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    out = symphony(redis_url, "cancel", "s1", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert finish(link, claimed, tmp_path) in ("cancelled", "done")  # finished after the cancel
    out = symphony(redis_url, "initialize", "--resume", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    drain(redis_url, tmp_path, r)
    counts = stats(r)
    assert counts["st0|completed"] == len(ITEMS), counts  # the item done before the cancel is not run again
    assert counts["st1|completed"] == len(ITEMS), counts


@pytest.mark.slow
def test_a_lost_ready_set_is_rebuilt_so_workers_find_the_queue(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.ready("st0"))
    plan = json.loads(repair(redis_url, path, "--dry-run", "--json").stdout)
    assert plan["unready"] == ["st0"] and plan["to_enqueue"] == 0, plan
    repair(redis_url, path)
    assert r.zscore(K.ready("st0"), "s1") is not None
    assert finish(link, claimed, tmp_path) == "done"
    drain(redis_url, tmp_path, r)


@pytest.mark.slow
def test_a_report_after_the_session_definition_vanished_records_no_cancel(redis_url, r, two_stages, tmp_path):
    path, link, claimed = two_stages
    r.delete(K.session("s1"))
    assert finish(link, claimed, tmp_path) == "done"  # nobody cancelled it
    assert not r.hgetall(K.outcomes("s1")) and r.llen(K.queue("st1", "s1")) == 1
    repair(redis_url, path)
    drain(redis_url, tmp_path, r)


def test_the_sessions_eta_stalls_while_redis_is_out_of_memory():
    import dataclasses

    from symphony.console.history import QueueFlow
    from symphony.console.panels.sessions import session_cells
    from symphony.console.sources import MainSource
    from symphony.engine.server import server_info_from
    from tests import console_fakes

    snap = console_fakes.snapshot()
    active = snap.sessions[0]
    flows = {f"{active.stages[-1]}:{active.name}": QueueFlow(per_minute=12.0, remaining=90, eta_s=450.0)}
    memory = {"maxmemory": 1 << 20, "maxmemory_policy": "noeviction", "used_memory": 1 << 20}
    full = dataclasses.replace(snap, server=server_info_from({"redis_version": "7.0.15"}, memory))
    eta = lambda s: str(session_cells(active, {}, MainSource(s, (), flows))[6])  # noqa: E731
    assert eta(snap) == "7m30s"
    assert eta(full) == "stalled"


def test_initialize_and_repair_warn_about_an_evicting_policy(private, tmp_path):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    path = session_file(tmp_path, ["a"])
    for verb in (("initialize", str(path)), ("repair", "s1", "--file", str(path), "--dry-run")):
        out = symphony(server.url, *verb)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "symphony: warning: maxmemory-policy is allkeys-lru" in out.stderr


def test_purge_releases_the_fleet_wide_running_count_of_the_tasks_it_takes_out(redis_url, r, engine, tmp_path):
    path = session_file(tmp_path, ITEMS, stages=2)
    initialize_session(engine, load_session(path))
    assert symphony(redis_url, "limit", "st0", "5").returncode == 0
    link = engine.worker_link("w1", ["st0"])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    assert int(r.hget(K.control("st0"), "running")) == 1
    assert symphony(redis_url, "purge", "s1", "--force", "--yes").returncode == 0
    assert int(r.hget(K.control("st0"), "running")) == 0  # its report will find it gone
    assert finish(link, claimed, tmp_path) == "lost" and int(r.hget(K.control("st0"), "running")) == 0
