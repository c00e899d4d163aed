"""The Prometheus exporter against a real Redis and real worker processes."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import math
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from symphony.console.exporter import Exporter
from symphony.engine import Engine, load_session, resolve_redis
from symphony.engine.embedded import free_port
from symphony.engine.initialize import initialize_session
from tests.helpers import ROOT, WorkerRun, wait_until, worker_env, write_pipeline, write_session
from tests.redis_cluster import command_calls
from tests.scrape import fetch, parse, scrape, series, value
from tests.test_security import acl_server  # noqa: F401 - the fixture (a server with the ACL users)

OUTPUT = "{root}/{session}/{stage}/{item}.json"
QUEUE_FIGURES = {  # exported name -> field of `symphony status --json`'s queues
    "symphony_tasks_queued": "queued", "symphony_tasks_delayed": "delayed", "symphony_tasks_in_flight": "in_flight",
    "symphony_items_completed": "completed", "symphony_items_failed": "failed", "symphony_items_timed_out": "timed_out",
    "symphony_items_cancelled": "cancelled", "symphony_tasks_enqueued_total": "enqueued",
    "symphony_tasks_completed_total": "completions", "symphony_tasks_failed_total": "failures",
    "symphony_tasks_timed_out_total": "timeouts", "symphony_tasks_cancelled_total": "cancellations",
    "symphony_tasks_retried_total": "retried", "symphony_tasks_reclaimed_total": "reclaimed",
}
COUNTERS = [n for n in QUEUE_FIGURES if n.endswith("_total")]


@pytest.fixture
def exporter_of():
    started: list[Exporter] = []

    def start(engine: Engine, **kwargs) -> Exporter:
        exporter = Exporter(engine, port=0, **kwargs).start()
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def two_stage_session(tmp_path: Path, items: list[str]) -> Path:
    write_pipeline(tmp_path / "pipe.yaml", [
        {"name": "a", "pool": "pa", "handler": "tests.handlers:fail_some", "output": OUTPUT, "max_attempts": 2,
         "retry_backoff": 0.05, "params": {"bad": ["i3"]}},
        {"name": "b", "pool": "pb", "handler": "tests.handlers:hang", "output": OUTPUT, "params": {"hang": 600}},
    ])
    return write_session(tmp_path / "two.yaml", "two", "pipe.yaml", items, root=str(tmp_path / "data"))


def status_json(cli) -> dict:
    code, out, err = cli("status", "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_the_scrape_parses_and_its_figures_equal_status_json(engine, redis_url, tmp_path, cli, exporter_of):
    items = [f"i{n}" for n in range(6)]
    initialize_session(engine, load_session(two_stage_session(tmp_path, items)))
    first = WorkerRun(redis_url, "--roles", "a", "--burst", "--processes", "1", log_dir=tmp_path)
    assert first.wait(90) == 0, first.output()
    second = WorkerRun(redis_url, "--pool", "pb", "--processes", "1", "--drain-timeout", "1", log_dir=tmp_path)
    wait_until(lambda: [(w.state, w.roles) for w in engine.snapshot().workers] == [("busy", ("b",))], timeout=60,
               message="the worker of stage b busy, its roles reported")
    exporter = exporter_of(engine, cache_s=0)

    status = status_json(cli)
    text = fetch(exporter.url + "/metrics")
    samples, types = parse(text)  # prometheus-client's own parser of the text format

    assert types["symphony_tasks_completed"] == "counter" and types["symphony_tasks_queued"] == "gauge"
    assert types["symphony_task_duration_seconds"] == "histogram"
    assert value(samples, "symphony_up") == 1
    for q in status["queues"]:
        labels = {"session": q["session"], "stage": q["role"], "pool": q["pool"]}
        for name, field in QUEUE_FIGURES.items():
            assert value(samples, name, **labels) == q[field], (name, labels, q)
    a = next(q for q in status["queues"] if q["role"] == "a")
    assert (a["completed"], a["failed"], a["failures"], a["retried"]) == (5, 1, 1, 1)
    b = next(q for q in status["queues"] if q["role"] == "b")
    assert (b["in_flight"], b["queued"]) == (1, 4)
    for s in status["sessions"]:
        assert value(samples, "symphony_session_items", session=s["name"]) == s["items"] == 6
        assert value(samples, "symphony_session_completed_items", session=s["name"]) == s["completed"]
        assert value(samples, "symphony_session_progress_ratio", session=s["name"]) == pytest.approx(s["progress"])
        assert value(samples, "symphony_session_state", session=s["name"], state=s["state"]) == 1
    by_pool_state: dict[tuple[str, str], int] = {}
    for w in status["workers"]:
        by_pool_state[(w["pool"], w["state"])] = by_pool_state.get((w["pool"], w["state"]), 0) + 1
    exported = {(dict(k)["pool"], dict(k)["state"]): v for k, v in series(samples, "symphony_workers").items() if v}
    assert exported == by_pool_state == {("pb", "busy"): 1}
    assert value(samples, "symphony_workers", pool="pa", state="busy") == 0  # a pool with work shows zeros
    assert value(samples, "symphony_stage_workers", stage="b") == 1, json.dumps(status["workers"])
    assert value(samples, "symphony_stage_workers", stage="a") == 0
    worker = status["workers"][0]
    age = value(samples, "symphony_worker_heartbeat_age_seconds", worker=worker["id"], pool="pb", host=worker["host"])
    assert age is not None and age >= 0
    # the histogram of stage a: every completion once, in cumulative buckets
    assert value(samples, "symphony_task_duration_seconds_count", stage="a") == a["completions"] == 5
    assert value(samples, "symphony_task_duration_seconds_bucket", stage="a", le="+Inf") == a["completions"]
    buckets = sorted((float(dict(k)["le"]), v) for k, v in series(samples, "symphony_task_duration_seconds_bucket")
                     .items() if dict(k)["stage"] == "a")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][0] == math.inf
    assert value(samples, "symphony_task_duration_seconds_sum", stage="a") > 0
    # Redis's memory moves with every command: the same figure, read a moment apart
    assert value(samples, "symphony_redis_used_memory_bytes") == pytest.approx(status["used_memory"], rel=0.2)
    second.stop()


def test_ten_scrapers_cost_redis_one_read(engine, r, tmp_path, exporter_of):
    initialize_session(engine, load_session(two_stage_session(tmp_path, ["i0", "i1"])))
    exporter = exporter_of(engine, cache_s=60)

    def snapshot_reads() -> int:  # every snapshot sends two XREVRANGE (results and events)
        return command_calls(r, "xrevrange") // 2

    before = snapshot_reads()
    texts: list[str] = []
    threads = [threading.Thread(target=lambda: texts.append(fetch(exporter.url + "/metrics"))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    figures = [{k: v for k, v in parse(t)[0].items() if k[0].startswith("symphony_") and "age" not in k[0]}
               for t in texts]
    assert len(figures) == 10 and all(f == figures[0] for f in figures), "every scraper gets the same figures"
    assert snapshot_reads() - before == 1
    assert value(parse(texts[0])[0], "symphony_exporter_reads_total") == 1
    assert value(parse(texts[0])[0], "symphony_tasks_queued", session="two", stage="a", pool="pa") == 2


def healthz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_healthz_says_whether_redis_answers_and_the_figures_are_fresh(own_redis, exporter_of):
    engine = Engine(resolve_redis(own_redis.url), socket_timeout=2.0)
    try:
        exporter = exporter_of(engine, cache_s=0, stale_after_s=30)
        code, body = healthz(exporter.url)
        assert (code, body["ok"], body["redis"]) == (200, True, "reachable") and body["snapshot_age_s"] < 30
        own_redis.kill()
        code, body = healthz(exporter.url)
        assert (code, body["ok"], body["redis"]) == (503, False, "unreachable") and "unavailable" in body["error"]
        samples = scrape(exporter.url)
        assert value(samples, "symphony_up") == 0
        assert not series(samples, "symphony_tasks_queued"), "no old figures pass for current ones"
        assert value(samples, "symphony_exporter_read_errors_total") >= 1
        own_redis.start()
        wait_until(lambda: healthz(exporter.url)[0] == 200, timeout=30, message="healthz to recover")
    finally:
        engine.close()


def one_stage(tmp_path: Path, items: list[str], hang: list[str]) -> Path:
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "p", "handler": "tests.handlers:hang_listed",
                                             "output": OUTPUT, "params": {"hang": hang, "seconds": 0.02}}])
    return write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", items, root=str(tmp_path / "data"))


class Scraper:
    """Scrapes in a thread until stopped, keeping every value of every counter, in order."""

    def __init__(self, url: str):
        self.url = url
        self.history: dict[tuple[str, frozenset], list[float]] = {}
        self.up: list[float] = []
        self.latest: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                samples = scrape(self.url)
            except OSError:
                continue
            self.latest = samples
            self.up.append(value(samples, "symphony_up"))
            for key, v in samples.items():
                if key[0] in COUNTERS:
                    self.history.setdefault(key, []).append(v)
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def backwards(self) -> list[tuple]:
        return [(key, values) for key, values in self.history.items()
                if any(b < a for a, b in zip(values, values[1:]))]


@pytest.mark.slow
def test_counters_never_go_backwards_across_a_worker_crash_and_a_redis_restart(own_redis, tmp_path, exporter_of):
    url = own_redis.url
    engine = Engine(resolve_redis(url), socket_timeout=2.0)
    items = [f"i{n:02d}" for n in range(40)]
    initialize_session(engine, load_session(one_stage(tmp_path, items, hang=["i05"])))
    exporter = exporter_of(engine, cache_s=0)
    scraper = Scraper(exporter.url)
    worker = WorkerRun(url, "--processes", "2", "--prefetch", "1", log_dir=tmp_path, heartbeat=0.5)
    try:
        markers = tmp_path / "data" / "markers"
        wait_until(lambda: list(markers.glob("started-work-i05-1-*")), timeout=60, message="i05 to start")
        handler = int(list(markers.glob("started-work-i05-1-*"))[0].name.rsplit("-", 1)[1])
        # the worker process running it (the handler runs in its executor) crashes mid-task: its
        # supervisor reclaims the task
        os.kill(psutil.Process(handler).ppid(), signal.SIGKILL)
        labels = frozenset({"session": "s1", "stage": "work", "pool": "p"}.items())
        reclaimed = ("symphony_tasks_reclaimed_total", labels)
        completed = ("symphony_tasks_completed_total", labels)
        wait_until(lambda: scraper.latest.get(reclaimed) == 1, timeout=30, message="the reclaim to be exported")
        wait_until(lambda: scraper.latest.get(completed, 0) >= 10, timeout=60, message="progress")
        own_redis.kill()  # SIGKILL; the AOF (appendfsync always here) keeps every acknowledged write
        wait_until(lambda: 0 in scraper.up, timeout=30, message="the exporter to see Redis gone")
        own_redis.start()
        done = ("symphony_items_completed", labels)
        wait_until(lambda: scraper.latest.get(done) == 40, timeout=120, message="every item to complete")
        scraper.stop()
        assert 0 in scraper.up and scraper.up[-1] == 1
        assert scraper.backwards() == []
        assert len(scraper.history[completed]) > 3
        final = engine.snapshot().queue("work", "s1")
        assert (final.completed, final.reclaimed) == (40, 1) and final.completions >= 40
        assert scraper.latest[reclaimed] == 1
    finally:
        scraper.stop()
        worker.stop()
        engine.close()


def test_a_counter_lower_in_redis_than_before_is_not_exported_lower(engine, r, tmp_path, exporter_of):
    """A Redis restored from an older save (or one that lost its last writes) holds lower counts:
    the exported counter keeps its value and grows from there with the new counts."""
    initialize_session(engine, load_session(two_stage_session(tmp_path, ["i0", "i1", "i2"])))
    exporter = exporter_of(engine, cache_s=0)
    labels = {"session": "two", "stage": "a", "pool": "pa"}
    assert value(scrape(exporter.url), "symphony_tasks_enqueued_total", **labels) == 3
    r.hset(K.stats("two"), "a|enqueued", 1)  # as if the last two enqueues were lost
    samples = scrape(exporter.url)
    assert value(samples, "symphony_tasks_enqueued_total", **labels) == 3
    assert value(samples, "symphony_tasks_queued", **labels) == 3  # gauges are what Redis says
    r.hincrby(K.stats("two"), "a|enqueued", 4)  # five now, four more since the drop
    assert value(scrape(exporter.url), "symphony_tasks_enqueued_total", **labels) == 7


@pytest.mark.slow
def test_symphony_metrics_serve_runs_answers_and_stops_on_sigterm(redis_url, tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "symphony.console.commands", "metrics", "serve", "--port",
                                str(port)], cwd=ROOT, env=worker_env(redis_url), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthz(base)[0] == 200, timeout=30, message="the exporter to answer")
        assert value(scrape(base), "symphony_up") == 1
        assert "process_cpu_seconds_total" in fetch(base + "/metrics")
        with pytest.raises(urllib.error.HTTPError) as missing:
            fetch(base + "/nothing")
        assert missing.value.code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"on http://127.0.0.1:{port}/metrics" in err


def test_symphony_metrics_serve_refuses_a_port_in_use(redis_url, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "symphony.console.commands", "metrics", "serve", "--port",
                              str(port)], cwd=ROOT, env=worker_env(redis_url), capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr


@pytest.mark.slow
def test_failure_totals_survive_a_retry_and_an_exporter_restart(engine, redis_url, tmp_path, exporter_of):
    """`symphony retry` takes failed items out of the failed state; the total of failures stays,
    kept by Redis (not by the exporter's memory: a new exporter reads the same total)."""
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "p", "handler": "tests.handlers:fail_some",
                                             "output": OUTPUT, "max_attempts": 1, "params": {"bad": ["bad"]}}])
    session = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", ["ok", "bad"], root=str(tmp_path / "data"))
    initialize_session(engine, load_session(session))
    labels = {"session": "s1", "stage": "work", "pool": "p"}
    for round_ in (1, 2):
        worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
        assert worker.wait(90) == 0, worker.output()
        samples = scrape(exporter_of(engine, cache_s=0).url)  # a new exporter each time
        assert value(samples, "symphony_tasks_failed_total", **labels) == round_
        assert value(samples, "symphony_items_failed", **labels) == 1
        engine.retry("s1")
        samples = scrape(exporter_of(engine, cache_s=0).url)
        assert value(samples, "symphony_items_failed", **labels) == 0
        assert value(samples, "symphony_tasks_failed_total", **labels) == round_


def test_slurm_jobs_and_the_servers_facts_equal_status_json(own_redis, cli, monkeypatch, exporter_of):
    """SLURM jobs by state, as a tracker records them, and what the server's settings mean."""
    from symphony.engine import JobSet, Observation

    monkeypatch.setenv("REDIS_URL", own_redis.url)
    client = own_redis.client()
    client.config_set("maxmemory", 512 * 1024 * 1024)
    client.config_set("maxmemory-policy", "allkeys-lru")
    engine = Engine(resolve_redis(own_redis.url))
    try:
        engine.slurm.record("gpu", [(str(n), {}) for n in range(1001, 1006)], pool="linux", cluster="hpc")
        engine.slurm.move("gpu", [Observation("1001", JobSet.COMPLETED), Observation("1002", JobSet.FAILED),
                                  Observation("1003", JobSet.TIMEOUT)], pending=1, running=1)
        samples = scrape(exporter_of(engine, cache_s=0).url)
        status = status_json(cli)
    finally:
        engine.close()
    (tag,) = status["slurm"]
    labels = {"tag": "gpu", "pool": "linux", "cluster": "hpc"}
    assert value(samples, "symphony_slurm_jobs", **labels, state="pending") == tag["pending"] == 1
    assert value(samples, "symphony_slurm_jobs", **labels, state="running") == tag["running"] == 1
    for state in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"):
        assert value(samples, "symphony_slurm_jobs", **labels, state=state.lower()) == tag["counts"][state]
    assert [tag["counts"][s] for s in ("COMPLETED", "FAILED", "TIMEOUT")] == [1, 1, 1]
    assert value(samples, "symphony_slurm_tracker_poll_age_seconds", **labels) >= 0
    server = status["server"]
    assert value(samples, "symphony_redis_maxmemory_bytes") == server["maxmemory"] == 512 * 1024 * 1024
    assert value(samples, "symphony_redis_can_evict") == server["can_evict"] == 1
    assert value(samples, "symphony_redis_out_of_memory") == server["out_of_memory"] == 0
    assert value(samples, "symphony_redis_problems") == len(server["problems"]) >= 1
    assert value(samples, "symphony_redis_info", kind=server["kind"], version=server["version"],
                 maxmemory_policy="allkeys-lru") == 1


@pytest.mark.slow
def test_the_exporter_reads_everything_as_the_read_only_user(acl_server, tmp_path, exporter_of):
    """Run as `symphony acl reader`'s user, a scrape needs nothing it may not do: ACL LOG stays empty."""
    from tests.test_security import READER_PW, WORKER_PW, acl_log, as_user

    items = [f"i{n}" for n in range(4)]
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "p", "handler": "tests.handlers:ok",
                                             "output": OUTPUT}])
    session = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", items, root=str(tmp_path / "data"))
    with Engine(resolve_redis(acl_server.url)) as admin:
        initialize_session(admin, load_session(session))
    worker = WorkerRun(acl_server.url, "--burst", "--processes", "1", log_dir=tmp_path,
                       env=worker_env(as_user(acl_server, "symphony-worker", WORKER_PW)))
    assert worker.wait(90) == 0, worker.output()  # the worker user writes the histogram too
    with acl_server.client() as admin:
        admin.execute_command("ACL", "LOG", "RESET")
    reader = Engine(resolve_redis(as_user(acl_server, "symphony-reader", READER_PW)))
    try:
        samples = scrape(exporter_of(reader, cache_s=0).url)
    finally:
        reader.close()
    assert value(samples, "symphony_up") == 1
    assert value(samples, "symphony_task_duration_seconds_count", stage="work") == 4
    assert value(samples, "symphony_items_completed", session="s1", stage="work", pool="p") == 4
    assert acl_log(acl_server) == [], "a scrape needs more than the reader may do"


def test_a_task_claimed_before_the_first_heartbeat_still_has_an_age(engine, tmp_path, exporter_of):
    """A worker's first claim may come before its first heartbeat wrote its description; the
    heartbeat then starts the clock of the task, so its age is exported."""
    initialize_session(engine, load_session(two_stage_session(tmp_path, ["i0"])))
    link = engine.worker_link("early-1", ["a"])
    steps = [link.step() for _ in range(2)]  # the first finds the queue, the second claims
    assert steps[1].claimed is not None
    raw = link.in_flight()[0]
    link.beat(5.0, 12.5, {"name": "early-1", "host": "h", "pool": "pa", "roles": "a", "state": "busy",
                          "current": raw})
    (worker,) = engine.snapshot().workers
    assert worker.current == "a:i0@two" and worker.current_age_s is not None
    samples = scrape(exporter_of(engine, cache_s=0).url)
    assert value(samples, "symphony_worker_task_age_seconds", worker="early-1", pool="pa", host="h") >= 0
