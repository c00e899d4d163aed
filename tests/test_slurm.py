"""Symphony on a real SLURM cluster (tests/slurm_cluster.py): workers as jobs, the tracker, the
walltime, adapt. Skipped, with the reason, where SLURM cannot be started."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from symphony.engine import JobSet, load_session
from symphony.engine.initialize import initialize_session
from symphony.slurm import AdaptLimits, Adapter, ScriptOptions, SlurmClient, Tracker
from tests.helpers import ROOT, Poll, WorkerRun, wait_until, worker_env, write_pipeline, write_session
from tests.slurm_cluster import SlurmCluster, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")

FAST = ["--worker-arg=--heartbeat=0.5", "--worker-arg=--idle-wait=0.5"]


@pytest.fixture(scope="module")
def cluster():
    try:
        c = SlurmCluster().start()
    except Exception as exc:  # noqa: BLE001 - e.g. a port or munge problem on this machine
        pytest.skip(f"the test SLURM cluster did not start: {exc}")
    yield c
    c.stop()


@pytest.fixture
def slurm(cluster, monkeypatch, tmp_path):
    """The cluster for one test: clients find it through SLURM_CONF; jobs are cancelled after."""
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    yield cluster
    cluster.cancel_all()


def job_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--chdir", str(ROOT), "--output", str(tmp_path / "%x-%j.out"), *FAST, *extra]


def pipeline(tmp_path: Path, stages: list[dict], items: list[str], name: str = "s1") -> Path:
    write_pipeline(tmp_path / "pipe.yaml", stages)
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", items, root=str(tmp_path / "data"))


def stage(name: str, handler: str, pool: str = "hpc", **params) -> dict:
    return {"name": name, "pool": pool, "handler": handler, "output": "{root}/{session}/{stage}/{item}.json",
            "timeout": 600, "max_attempts": 3, "params": params}


def submit(cli, tmp_path: Path, *args: str) -> list[str]:
    code, out, err = cli("slurm", "submit", "--json", *job_args(tmp_path), *args)
    assert code == 0, err
    return json.loads(out)["ids"]


def single_set(engine, tag: str) -> dict[str, str]:
    """Each recorded id's state set, checking that it is in exactly one (and the sets in ALL)."""
    sets = engine.slurm.membership(tag)
    every = sets.pop("ALL")
    where: dict[str, str] = {}
    for name, ids in sets.items():
        for job_id in ids:
            assert job_id not in where, f"{job_id} is in {where[job_id]} and {name}: {sets}"
            where[job_id] = name
    assert set(where) == every, f"ALL {sorted(every)} but the state sets hold {sorted(where)}"
    return where


def tracked(engine, slurm_client: SlurmClient, tag: str, ids, want: set[str], timeout: float = 90.0) -> dict[str, str]:
    """Poll with a real tracker until every id is in one of ``want``."""
    tracker = Tracker(engine, slurm_client, interval_s=0.5)
    try:
        def settled():
            tracker.poll_safely()
            where = single_set(engine, tag)
            return where if all(where.get(i) in want for i in ids) else None

        poll = Poll(settled, timeout, f"jobs {ids} to reach {want}", lambda: f"\n{single_set(engine, tag)}")
        while not poll.ready():
            time.sleep(0.3)
        return poll.value
    finally:
        tracker.close()


@pytest.mark.slow
def test_two_jobs_drain_a_four_stage_session_and_end_completed(slurm, engine, cli, tmp_path):
    items = [f"i{n}" for n in range(8)]
    session = pipeline(tmp_path, [stage("a", "tests.handlers:slurm_kv", seconds=0.1),
                                  stage("b", "tests.handlers:ok", seconds=0.1),
                                  stage("c", "tests.handlers:ok", seconds=0.1),
                                  stage("d", "tests.handlers:ok", seconds=0.1)], items)
    initialize_session(engine, load_session(session))
    ids = submit(cli, tmp_path, "--pool", "hpc", "--jobs", "2", "--burst", "--time", "10")
    assert len(ids) == 2 and all(re.fullmatch(r"\d+_[01]", i) for i in ids), ids  # one job array

    # the workers say which SLURM job they run in (symphony status --json is this snapshot's to_dict)
    def slurm_workers():
        return [w for w in engine.snapshot(events=0).to_dict()["workers"] if w["slurm_array_id"] in ids]
    seen = wait_until(slurm_workers, timeout=60, message="a worker inside a SLURM job to heartbeat")
    assert seen[0]["slurm_job_id"].isdigit() and seen[0]["pool"] == "hpc"

    where = tracked(engine, SlurmClient(), "hpc", ids, {"COMPLETED"})
    assert where == {i: "COMPLETED" for i in ids}
    for s in "abcd":
        for item in items:
            assert (tmp_path / "data" / "s1" / s / f"{item}.json").is_file(), (s, item)
    tag = engine.slurm.tag("hpc")
    assert tag.counts["COMPLETED"] == 2 and tag.live == 0 and tag.pool == "hpc" and tag.cluster == slurm.name
    assert engine.snapshot(events=0).slurm[0].counts["COMPLETED"] == 2

    # each job's own key/values are reachable by its SLURM job id
    done = engine.slurm.jobs("hpc", ids)
    writers = [j for j in done if engine.origin_jobs(f"slurm-{slurm.name}-{j.id}")]
    assert writers, "no job recorded key/values under its SLURM job id"
    code, out, err = cli("slurm", "jobs", writers[0].id, "--last", "--json")
    assert code == 0, err
    last = json.loads(out)
    assert last["session"] == "s1" and last["values"]["slurm_job"] == writers[0].job_id, last

    code, out, err = cli("slurm", "status")
    assert code == 0 and ids[0] in out and "COMPLETED" in out, out


@pytest.mark.parametrize("how", ["scancel", "kill"])
@pytest.mark.slow
def test_a_cancelled_or_killed_job_loses_nothing(slurm, engine, cli, tmp_path, redis_url, how):
    session = pipeline(tmp_path, [stage("work", "tests.handlers:hang_in_slurm", hang=300)], ["x1"])
    initialize_session(engine, load_session(session))
    [job] = submit(cli, tmp_path, "--pool", "hpc", "--jobs", "1", "--term-grace", "1")
    [worker] = wait_until(lambda: [w for w in engine.snapshot(events=0).workers
                                   if w.slurm_job_id == job and w.current.startswith("work:x1")],
                          timeout=60, message="the job to run the task")
    if how == "scancel":  # SIGTERM: the worker hands the task back after --term-grace; SIGKILL would follow
        slurm.run("scancel", job)
        want = {"CANCELLED"}
    else:  # no chance at all (as when its node dies): the task comes back when the lease lapses
        os.kill(int(worker.supervisor.rsplit("-", 1)[1]), signal.SIGKILL)  # the job's batch process
        os.kill(worker.pid, signal.SIGKILL)
        want = {s.value for s in JobSet if s.finished}
    where = tracked(engine, SlurmClient(), "hpc", [job], want)
    # the task is back (in its queue, or still held by the dead worker until its lease lapses):
    # a worker outside SLURM completes it
    local = WorkerRun(redis_url, "--pool", "hpc", "--burst", log_dir=tmp_path, heartbeat=0.5)
    assert local.wait(60) == 0, local.output()
    assert (tmp_path / "data" / "s1" / "work" / "x1.json").is_file()
    stats = {k: int(v) for k, v in engine.client.hgetall(K.stats("s1")).items()}
    assert stats["work|completed"] == 1 and stats.get("work|failed", 0) == 0, stats
    if how == "scancel":
        assert where[job] == "CANCELLED"
        assert stats.get("work|reclaimed", 0) == 0, "the task was handed back, not left to its lease"
    else:
        assert stats["work|reclaimed"] == 1, stats
        assert where[job] == "FAILED"  # SLURM's word for a batch script killed by a signal


@pytest.mark.slow
def test_the_warning_signal_hands_the_task_back_before_the_time_limit(slurm, engine, cli, tmp_path, redis_url):
    session = pipeline(tmp_path, [stage("work", "tests.handlers:hang_in_slurm", hang=600)], ["x1"])
    initialize_session(engine, load_session(session))
    # a one-minute limit given to sbatch directly, so the worker knows only SLURM's signal
    # (USR1 50 s before the end): it stops claiming, hands the task back 5 s later, and exits
    [job] = submit(cli, tmp_path, "--pool", "hpc", "--jobs", "1", "--sbatch=--time=1", "--warning", "50",
                   "--margin", "45")
    wait_until(lambda: any(w.slurm_job_id == job and w.current for w in engine.snapshot(events=0).workers),
               timeout=60, message="the job to run the task")
    where = tracked(engine, SlurmClient(), "hpc", [job], {"COMPLETED", "TIMEOUT"}, timeout=150)
    # COMPLETED: the worker left before the limit (exit status 0), so SLURM never had to end it
    assert where[job] == "COMPLETED", where
    log = (tmp_path / f"symphony-hpc-{job}.out").read_text()
    assert "time limit near" in log and "handing running tasks back" in log, log
    assert engine.item_stage("s1", "x1") == "work"  # back in its queue, nothing lost
    [raw] = engine.client.lrange(K.queue("work", "s1"), 0, -1)
    assert json.loads(raw)["a"] == 0  # a hand-back charges no attempt
    local = WorkerRun(redis_url, "--pool", "hpc", "--burst", log_dir=tmp_path, heartbeat=0.5)
    assert local.wait(60) == 0, local.output()
    assert (tmp_path / "data" / "s1" / "work" / "x1.json").is_file()


@pytest.mark.slow
def test_jobs_that_fail_at_start_show_slurms_reason(slurm, engine, cli, tmp_path):
    session = pipeline(tmp_path, [stage("work", "tests.handlers:ok")], ["x1"])
    initialize_session(engine, load_session(session))
    [bad_env] = submit(cli, tmp_path, "--pool", "hpc", "--python-env", str(tmp_path / "no-such-venv"))
    code, out, err = cli("slurm", "submit", "--json", "--pool", "hpc", "--chdir", str(ROOT),
                         "--output", str(tmp_path / "missing" / "%j.out"))
    assert code == 0, err
    [no_log] = json.loads(out)["ids"]
    tracked(engine, SlurmClient(), "hpc", [bad_env, no_log], {"FAILED"})
    code, out, err = cli("slurm", "status", "--state", "FAILED")
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in (bad_env, no_log)}
    assert "NonZeroExitCode" in rows[bad_env] and "2:0" in rows[bad_env], out
    assert "JobLaunchFailure" in rows[no_log], out
    assert "does not exist" in (tmp_path / f"symphony-hpc-{bad_env}.out").read_text()


@pytest.mark.slow
def test_adapt_scales_to_max_for_1000_items_and_back_to_zero(slurm, engine, tmp_path):
    items = [f"i{n:04d}" for n in range(1000)]
    session = pipeline(tmp_path, [stage("work", "tests.handlers:ok", pool="burst", seconds=0.02)], items)
    options = ScriptOptions(pool="burst", output=str(tmp_path / "%x-%j.out"), chdir=str(ROOT),
                            worker_args=("--heartbeat=0.5", "--idle-wait=0.5"))
    adapter = Adapter(engine, SlurmClient(), options, AdaptLimits(minimum=0, maximum=3, per_job=1, max_pending=3,
                                                                 interval_s=0.5), engine.config)
    decisions = []
    stop = threading.Event()
    thread = threading.Thread(target=adapter.run, args=(stop, decisions.append), daemon=True)
    thread.start()
    try:
        wait_until(lambda: decisions and decisions[-1].target == 0, timeout=20, message="adapt to run idle")
        assert not slurm.live_jobs(), "jobs were submitted without work"
        initialize_session(engine, load_session(session))
        peak = 0

        def drained():
            nonlocal peak
            peak = max(peak, len(slurm.live_jobs()))
            snap = engine.snapshot(events=0)
            return snap.sessions[0].completed == 1000 and decisions[-1].live == 0 and not slurm.live_jobs()

        poll = Poll(drained, 180, "the 1,000 items to be done and every job gone",
                    lambda: f"\n{decisions[-3:]}\n{slurm.live_jobs()}")
        while not poll.ready():
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(20)
    assert max(d.live for d in decisions) == 3 and peak <= 3, (peak, decisions)
    assert all(d.live + d.submit <= 3 for d in decisions)
    where = single_set(engine, "burst")
    assert where and set(where.values()) == {"COMPLETED"}, where  # burst workers left by themselves
    assert engine.snapshot(events=0).slurm[0].live == 0


@pytest.mark.slow
def test_trackers_restarted_and_run_twice_keep_each_id_in_one_set(slurm, engine, cli, tmp_path):
    session = pipeline(tmp_path, [stage("work", "tests.handlers:ok", seconds=0.5)], [f"i{n}" for n in range(6)])
    initialize_session(engine, load_session(session))
    env = worker_env(engine.config.url, SLURM_CONF=slurm.env["SLURM_CONF"])

    def tracker():
        return subprocess.Popen([sys.executable, "-m", "symphony.console.commands", "slurm", "track", "--interval",
                                 "0.3"], env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)

    trackers = [tracker(), tracker()]
    try:
        ok = submit(cli, tmp_path, "--pool", "hpc", "--jobs", "3", "--burst")
        [bad] = submit(cli, tmp_path, "--pool", "hpc", "--python-env", str(tmp_path / "nowhere"))
        [cancelled] = submit(cli, tmp_path, "--pool", "hpc", "--sbatch=--begin=now+3600")
        slurm.run("scancel", cancelled)
        ids = [*ok, bad, cancelled]
        deadline = time.monotonic() + 120
        restarted = False
        while time.monotonic() < deadline:
            where = single_set(engine, "hpc")  # checked again and again while both trackers move jobs
            if not restarted and any(v != "PENDING_AND_RUNNING" for v in where.values()):
                os.killpg(trackers[0].pid, signal.SIGKILL)  # mid-run, holding the lock or not
                trackers[0].wait(10)
                trackers[0] = tracker()
                restarted = True
            if restarted and all(where.get(i, "PENDING_AND_RUNNING") != "PENDING_AND_RUNNING" for i in ids):
                break
            time.sleep(0.05)
        where = single_set(engine, "hpc")
        assert restarted and {i: where[i] for i in ids} == {**{i: "COMPLETED" for i in ok}, bad: "FAILED",
                                                           cancelled: "CANCELLED"}, where
    finally:
        for t in trackers:
            if t.poll() is None:
                os.killpg(t.pid, signal.SIGTERM)
                t.wait(20)
    logs = [t.stdout.read() for t in trackers]
    assert any("standing by" in text for text in logs), logs


@pytest.mark.slow
def test_a_job_slurm_never_knew_becomes_unknown(slurm, engine, cli):
    code, out, err = cli("slurm", "adopt", "--tag", "hpc", "--pool", "hpc", "999999")
    assert code == 0, err
    where = tracked(engine, SlurmClient(), "hpc", ["999999"], {"UNKNOWN"}, timeout=30)
    assert where == {"999999": "UNKNOWN"}
    [job] = engine.slurm.jobs("hpc", ["999999"])
    assert "no longer knows" in job.note
