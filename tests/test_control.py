"""Operator control with real workers and a real Redis: drain (and undrain) of workers and hosts."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
from pathlib import Path

import pytest

from symphony.engine import Engine, load_session
from symphony.engine.initialize import initialize_session
from tests.helpers import WorkerRun, wait_until, worker_env, write_pipeline, write_session, held


def init(engine: Engine, path: Path):
    return initialize_session(engine, load_session(path))


def stats(r, session: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(K.stats(session)).items()}


def session_file(tmp_path: Path, items, *, name="s1", handler="tests.handlers:ok", params=None, stage_extra=None,
                 **session_extra) -> Path:
    stage = {"name": "work", "pool": "p", "handler": handler, "output": "{root}/{session}/{stage}/{item}.json",
             "timeout": 120, "max_attempts": 3, "retry_backoff": 0.05, "params": params or {}, **(stage_extra or {})}
    if not (tmp_path / "pipe.yaml").exists():
        write_pipeline(tmp_path / "pipe.yaml", [stage])
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", items, root=str(tmp_path / "data"),
                         **session_extra)


def ran(tmp_path: Path) -> list[str]:
    markers = tmp_path / "data" / "markers"
    return sorted(p.name for p in markers.glob("ran-*")) if markers.is_dir() else []


def workers_of(engine: Engine, host: str):
    return [w for w in engine.snapshot(events=1).workers if w.host == host and w.state != "dead"]


@pytest.mark.slow
def test_drain_one_of_two_hosts_exits_with_nothing_in_flight_and_the_other_finishes(engine, r, redis_url, tmp_path,
                                                                                     cli):
    items = [f"i{n:02d}" for n in range(40)]
    init(engine, session_file(tmp_path, items, params={"seconds": 0.15}))
    a = WorkerRun(redis_url, "--processes", "2", "--name", "vma", log_dir=tmp_path,
                  env=worker_env(redis_url, SYMPHONY_HOSTNAME="vma"))
    b = WorkerRun(redis_url, "--processes", "2", "--name", "vmb", log_dir=tmp_path,
                  env=worker_env(redis_url, SYMPHONY_HOSTNAME="vmb"))
    wait_until(lambda: len(workers_of(engine, "vma")) == 2 and len(workers_of(engine, "vmb")) == 2,
               message="both hosts' workers to register")
    wait_until(lambda: stats(r, "s1").get("work|completed", 0) >= 4, message="some work to complete")
    code, out, err = cli("drain", "--host", "vma", "--wait", "--timeout", "60")
    assert code == 0, out + err
    assert "has exited" in out
    assert a.wait(30) == 0, a.output()  # the supervisor exits once its drained children did
    assert "drained" in a.output()
    assert not workers_of(engine, "vma")
    assert not [w for w in r.zrange(K.workers, 0, -1) if w.startswith("vma")]
    assert all(len(held(r, w)) == 0 for w in r.zrange(K.workers, 0, -1)
               if w.startswith("vma"))
    wait_until(lambda: stats(r, "s1").get("work|done", 0) == 40, timeout=60, message="the other host to finish")
    counts = stats(r, "s1")
    assert counts["work|completed"] == 40 and counts["work|running"] == 0
    assert len(ran(tmp_path)) == 40  # every item ran exactly once: nothing lost or run twice
    kinds = [f.get("kind") for _, f in r.xrange(K.events)]
    assert "drain" in kinds
    snap = json.loads(engine.snapshot().to_json())
    assert snap["drains"][0]["kind"] == "host" and snap["drains"][0]["target"] == "vma"
    assert cli("undrain", "vma")[0] == 0
    assert engine.drains() == ()
    b.stop()
    a.stop()


@pytest.mark.slow
def test_drain_now_idle_hands_back_and_undrain_resumes(engine, r, redis_url, tmp_path, cli):
    init(engine, session_file(tmp_path, ["long", "short"], handler="tests.handlers:hang_first_attempt",
                              params={"hang": 60}))
    w = WorkerRun(redis_url, "--processes", "1", "--name", "solo", "--prefetch", "1", log_dir=tmp_path)
    wait_until(lambda: stats(r, "s1").get("work|running") == 1, message="the first task to start")
    code, out, err = cli("drain", "solo", "--now", "--idle", "--wait", "--timeout", "60", "--json")
    assert code == 0, out + err
    result = json.loads(out)
    assert result["kind"] == "worker" and result["now"] and result["idle"] and result["waiting_for"] == []
    # handed back to the head of its queue, its attempt not charged; the worker stays up, drained
    counts = stats(r, "s1")
    assert counts["work|running"] == 0 and r.llen(K.queue("work", "s1")) == 2
    assert json.loads(r.lindex(K.queue("work", "s1"), 0))["a"] == 0
    (worker,) = engine.snapshot(events=1).workers
    assert worker.state == "drained" and w.process.poll() is None
    assert cli("undrain", "solo")[0] == 0
    wait_until(lambda: stats(r, "s1").get("work|running") == 1, message="claiming again after undrain")
    w.stop()


def test_drain_needs_one_target_and_is_recorded_with_who_and_when(engine, r):
    with pytest.raises(Exception, match="exactly one"):
        engine.drain()
    with pytest.raises(Exception, match="exactly one"):
        engine.drain(worker="a", host="b")
    d = engine.drain(pool="linux", idle=True, by="ops@desk")
    assert (d.kind, d.target, d.idle, d.now, d.by) == ("pool", "linux", True, False, "ops@desk")
    assert engine.drain_for("w1", name="x", host="h", pool="linux") == d.__class__(
        "pool", "linux", idle=True, by="ops@desk", at_ms=d.at_ms)
    assert engine.drain_for("w1", name="x", host="h", pool="windows") is None
    engine.drain(host="h", now=True)
    both = engine.drain_for("w1", host="h", pool="linux")
    assert both.now and not both.idle  # the most urgent of the two
    assert engine.undrain(pool="linux") and not engine.undrain(pool="linux")
    assert [d.field for d in engine.drains()] == ["host:h"]


def claimed_total(r, session: str, stage: str = "work") -> int:
    """Tasks ever claimed of the stage: those running plus those finished (one read)."""
    running, completed = r.hmget(K.stats(session), f"{stage}|running", f"{stage}|completed")
    return int(running or 0) + int(completed or 0)


@pytest.mark.slow
def test_pause_mid_run_no_claim_after_it_then_resume_completes_with_exact_totals(engine, r, redis_url, tmp_path,
                                                                                   cli):
    items = [f"i{n:02d}" for n in range(40)]
    init(engine, session_file(tmp_path, items, params={"seconds": 0.1}))
    w = WorkerRun(redis_url, "--processes", "2", log_dir=tmp_path)
    wait_until(lambda: stats(r, "s1").get("work|completed", 0) >= 5, message="some work to complete")
    code, out, err = cli("pause", "s1")
    assert code == 0 and "paused" in out, out + err
    at_pause = claimed_total(r, "s1")  # claims are atomic steps: none can come after the pause
    # the tasks in flight finish; nothing more is claimed
    wait_until(lambda: stats(r, "s1").get("work|running", 0) == 0, message="tasks in flight to finish")
    wait_until(lambda: all(wk.state == "idle" for wk in engine.snapshot(events=1).workers),
               message="the workers to go idle")
    assert claimed_total(r, "s1") == at_pause
    assert stats(r, "s1")["work|completed"] == at_pause and r.llen(K.queue("work", "s1")) == 40 - at_pause
    assert len(ran(tmp_path)) == at_pause
    snap = json.loads(engine.snapshot().to_json())
    assert snap["sessions"][0]["paused"] and snap["queues"][0]["paused"]
    assert cli("resume", "s1")[0] == 0
    wait_until(lambda: stats(r, "s1").get("work|done", 0) == 40, timeout=60, message="the session to complete")
    counts = stats(r, "s1")
    assert counts["work|completed"] == 40 and counts["work|running"] == 0 and r.llen(K.queue("work", "s1")) == 0
    assert len(ran(tmp_path)) == 40  # none lost, none counted or run twice
    who = [f for _, f in r.xrange(K.events) if f.get("kind") in ("pause", "resume")]
    assert [f["kind"] for f in who] == ["pause", "resume"] and all(f.get("by") for f in who)
    w.stop()


@pytest.mark.slow
def test_priority_10_drains_before_priority_0_and_a_paused_one_lets_the_other_run(engine, r, redis_url, tmp_path):
    lo = session_file(tmp_path, [f"lo{n:02d}" for n in range(30)], name="lo", params={"seconds": 0.01})
    hi = session_file(tmp_path, [f"hi{n:02d}" for n in range(30)], name="hi", priority=10)
    init(engine, lo)  # the low one first: it has the older place in the queue order
    init(engine, hi)
    assert engine.steering("hi").priority == 10
    w = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path)
    wait_until(lambda: stats(r, "lo").get("work|done", 0) == 30 and stats(r, "hi").get("work|done", 0) == 30,
               timeout=60, message="both sessions to complete")
    order = [f["s"] for _, f in r.xrange(K.results)]
    assert order[:30].count("lo") <= 2, f"the low-priority session got more than its share: {order[:30]}"
    # with the high one paused, the low one runs
    hi2 = session_file(tmp_path, [f"h{n:02d}" for n in range(10)], name="hi2", priority=10)
    lo2 = session_file(tmp_path, [f"l{n:02d}" for n in range(10)], name="lo2")
    init(engine, hi2)
    engine.pause("hi2")  # before the worker's next claim can see it: initialize, then pause, is two steps
    init(engine, lo2)
    wait_until(lambda: stats(r, "lo2").get("work|done", 0) == 10, timeout=60, message="the low one to run")
    assert stats(r, "hi2").get("work|done", 0) <= 1
    engine.resume("hi2")
    wait_until(lambda: stats(r, "hi2").get("work|done", 0) == 10, timeout=60, message="the high one after resume")
    w.stop()


def inflight_now(r, seen: set[str]) -> int:
    """Tasks held by any worker, read atomically (one MULTI over every in-flight list ever seen)."""
    seen.update(r.zrange(K.workers, 0, -1))
    lists = [K.inflight(s, w) for w in sorted(seen) for s in sorted(r.smembers(K.holds(w)) | {"s1"})]
    with r.pipeline(transaction=True) as pipe:  # the session slot of s1: one MULTI
        for key in lists:
            pipe.llen(key)
        return sum(pipe.execute())


@pytest.mark.slow
def test_max_running_2_over_6_worker_processes_holds_through_sigkill_and_reclaim(engine, r, redis_url, tmp_path):
    import os
    import signal
    import threading

    import psutil

    items = [f"i{n:02d}" for n in range(24)]
    init(engine, session_file(tmp_path, items, params={"seconds": 0.3}, stage_extra={"max_running": 2}))
    assert engine.stage_control(["work"])[0].max_running == 2
    w = WorkerRun(redis_url, "--processes", "6", log_dir=tmp_path)
    peak = {"inflight": 0, "counted": 0, "samples": 0}
    stop = threading.Event()
    seen: set[str] = set()
    import redis as redis_py

    sampler_client = redis_py.Redis.from_url(redis_url, decode_responses=True)

    def sample():
        while not stop.is_set():
            peak["inflight"] = max(peak["inflight"], inflight_now(sampler_client, seen))
            peak["counted"] = max(peak["counted"], int(sampler_client.hget(K.control("work"), "running") or 0))
            peak["samples"] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        wait_until(lambda: len(engine.snapshot(events=1).workers) == 6, message="six workers")
        killed = 0
        for _ in range(2):  # SIGKILL a worker process holding a task; its supervisor reclaims it
            wait_until(lambda: any(wk.current for wk in engine.snapshot(events=1).workers), message="a busy worker")
            busy = next(wk for wk in engine.snapshot(events=1).workers if wk.current)
            if psutil.pid_exists(busy.pid):
                os.kill(busy.pid, signal.SIGKILL)
                killed += 1
            wait_until(lambda: len(held(r, busy.id)) == 0,
                       message="the killed worker's task to be reclaimed")
        wait_until(lambda: stats(r, "s1").get("work|done", 0) == 24, timeout=120, message="the session to complete")
    finally:
        stop.set()
        sampler.join(timeout=10)
        sampler_client.close()
    assert killed == 2
    assert peak["samples"] > 50
    assert peak["inflight"] == 2, peak  # reached, never passed
    assert peak["counted"] <= 2, peak
    assert stats(r, "s1").get("work|reclaimed", 0) >= 1
    wait_until(lambda: engine.stage_control(["work"])[0].running == 0, message="every slot released")
    w.stop()


@pytest.mark.slow
def test_a_rate_limit_holds_over_a_window_on_the_server_clock(engine, r, redis_url, tmp_path):
    rate = 4  # per second
    init(engine, session_file(tmp_path, [f"i{n:03d}" for n in range(400)], stage_extra={"rate": f"{rate}/s"}))
    w = WorkerRun(redis_url, "--processes", "2", log_dir=tmp_path)
    wait_until(lambda: claimed_total(r, "s1") >= 8, timeout=60, message="claims to begin")

    # every completion is stamped by Redis itself (its results entry's id: the server's ms), so
    # the window is counted from those stamps, not from when this test happened to look
    def stamps() -> list[int]:
        return [int(i.split("-")[0]) for i, f in r.xrange(engine.keys.results) if f.get("s") == "s1"]

    window_ms = 30_000
    start = wait_until(lambda: stamps(), timeout=60, message="the first completion")[0] + 2_000  # past the start
    wait_until(lambda: stamps()[-1] >= start + window_ms, timeout=window_ms / 1000 + 60, interval=0.5,
               message="completions past the window")
    inside = [t for t in stamps() if start <= t < start + window_ms]
    per_second = len(inside) / (window_ms / 1000)
    # never above the rate (plus one second's burst, and the two tasks in flight at its start); well
    # above zero (it runs)
    assert len(inside) <= rate * window_ms / 1000 + rate + 1 + 2, len(inside)
    assert per_second >= rate * 0.5, per_second
    w.stop()
