"""Operator control with real workers and a real Redis: drain (and undrain) of workers and hosts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from symphony.engine import Engine, load_session
from symphony.engine.initialize import initialize_session
from tests.helpers import WorkerRun, wait_until, worker_env, write_pipeline, write_session


def init(engine: Engine, path: Path):
    return initialize_session(engine, load_session(path))


def stats(r, session: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(f"symphony:stats:{session}").items()}


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
    assert not [w for w in r.zrange("symphony:workers", 0, -1) if w.startswith("vma")]
    assert all(r.llen(f"symphony:inflight:{w}") == 0 for w in r.zrange("symphony:workers", 0, -1)
               if w.startswith("vma"))
    wait_until(lambda: stats(r, "s1").get("work|done", 0) == 40, timeout=60, message="the other host to finish")
    counts = stats(r, "s1")
    assert counts["work|completed"] == 40 and counts["work|running"] == 0
    assert len(ran(tmp_path)) == 40  # every item ran exactly once: nothing lost or run twice
    kinds = [f.get("kind") for _, f in r.xrange("symphony:events")]
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
    assert counts["work|running"] == 0 and r.llen("work:s1") == 2
    assert json.loads(r.lindex("work:s1", 0))["a"] == 0
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
