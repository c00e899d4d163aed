"""Prefetch: claiming several short tasks in one atomic step and reporting them together.

Each report is still its own atomic move (in-flight → accounting → next stage); a report whose
task was reclaimed meanwhile is ``lost`` and changes nothing, whatever else travels with it.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
from pathlib import Path

import pytest

from symphony.engine import Finish, Outcome, OutcomeKind, load_session
from symphony.engine.initialize import initialize_session
from tests.helpers import WorkerRun, write_pipeline, write_session, held
from tests.test_engine_queue import make_record


def stats(r, session="s1") -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(K.stats(session)).items()}


def setup(engine, items=5):
    engine.register_session(make_record(), items=items)
    engine.enqueue("s1", "a", [(f"i{n}", None) for n in range(1, items + 1)])
    return engine.worker_link("w1", ["a", "b"])


def claim_batch(link, want):
    for _ in range(5):
        result = link.step(want=want)
        if result.batch:
            return result.batch
    raise AssertionError("nothing claimed")


def test_claim_several_moves_them_in_order_into_inflight(engine, r):
    link = setup(engine)
    batch = claim_batch(link, 3)
    assert [c.item for c in batch] == ["i1", "i2", "i3"]
    assert held(r, "w1") == [c.raw for c in batch]
    assert r.llen(K.queue("a", "s1")) == 2
    assert stats(r)["a|running"] == 3


def test_reports_travel_together_and_move_the_accounting_once_each(engine, r):
    link = setup(engine)
    batch = claim_batch(link, 3)
    result = link.step([Finish(c, Outcome(OutcomeKind.DONE), next_stage="b") for c in batch], claim=False)
    assert result.outcomes == ("done", "done", "done")
    assert [json.loads(m)["i"] for m in r.lrange(K.queue("b", "s1"), 0, -1)] == ["i1", "i2", "i3"]
    counts = stats(r)
    assert (counts["a|running"], counts["a|completed"], counts["b|enqueued"]) == (0, 3, 3)
    assert r.hgetall(K.live("s1")) == {"i1": "b", "i2": "b", "i3": "b", "i4": "a", "i5": "a"}
    assert len(held(r, "w1")) == 0
    assert r.xlen(K.results) == 3


def test_a_reclaimed_task_in_a_batch_is_lost_and_the_others_count(engine, r):
    link = setup(engine)
    batch = claim_batch(link, 3)
    r.lrem(K.inflight("s1", "w1"), 1, batch[1].raw)  # as if reclaimed meanwhile
    result = link.step([Finish(c, Outcome(OutcomeKind.DONE), next_stage="b") for c in batch], claim=False)
    assert result.outcomes == ("done", "lost", "done")
    counts = stats(r)
    assert (counts["a|running"], counts["a|completed"], counts["b|enqueued"]) == (1, 2, 2)


def test_mixed_outcomes_in_one_step(engine, r):
    link = setup(engine)
    batch = claim_batch(link, 4)
    reports = [Finish(batch[0], Outcome(OutcomeKind.DONE), next_stage="b"),
               Finish(batch[1], Outcome(OutcomeKind.FAILED, error="RuntimeError: boom"), attempts=3),
               Finish(batch[2], Outcome(OutcomeKind.RETRY, error="x", delay_s=30), attempts=1),
               Finish(batch[3], Outcome(OutcomeKind.DONE), next_stage="b")]
    result = link.step(reports, want=2)
    assert result.outcomes == ("done", "failed", "retry", "done")
    counts = stats(r)
    assert counts["a|completed"] == 2 and counts["a|failed"] == 1 and counts["a|retried"] == 1
    assert counts["a|delayed"] == 1 and counts["b|enqueued"] == 2
    assert json.loads(r.hget(K.outcomes("s1"), "i2"))["error"] == "RuntimeError: boom"
    assert r.zcard(K.delayed("a", "s1")) == 1
    assert [c.item for c in result.batch] == ["i5"]


def test_prefetched_tasks_handed_back_keep_their_order_and_attempts(engine, r):
    link = setup(engine)
    batch = claim_batch(link, 3)
    back = [Finish(c, Outcome(OutcomeKind.HANDBACK), attempts=1) for c in reversed(batch)]  # as the worker does
    assert link.step(back, claim=False).outcomes == ("handback",) * 3
    assert r.lrange(K.queue("a", "s1"), 0, 2) == [c.raw for c in batch]
    assert stats(r)["a|running"] == 0


def test_a_dead_worker_holding_a_batch_gives_every_task_back(engine, r):
    link = setup(engine)
    link.beat(0.5, 1.25, {"name": "w1"})
    claim_batch(link, 3)
    report = engine.reclaim_worker("w1", force=True, reason="test")
    assert report.requeued == 3
    assert r.llen(K.queue("a", "s1")) == 5 and stats(r)["a|running"] == 0


@pytest.mark.slow
def test_short_tasks_are_prefetched_by_a_real_worker_and_every_count_adds_up(engine, r, redis_url, tmp_path):
    stages = [{"name": name, "pool": "p", "handler": "tests.handlers:noop"} for name in ("a", "b")]
    write_pipeline(tmp_path / "pipe.yaml", stages)
    path = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", [f"i{n}" for n in range(300)],
                         root=str(tmp_path / "data"))
    initialize_session(engine, load_session(path))
    worker = WorkerRun(redis_url, "--burst", "--processes", "2", "--roles", "a,b", log_dir=tmp_path, cwd=tmp_path)
    assert worker.wait(120) == 0, worker.output()
    worker.stop()
    counts = stats(r)
    assert counts["a|completed"] == 300 and counts["b|completed"] == 300, counts
    assert counts["a|running"] == 0 and counts["b|running"] == 0, counts
    assert r.hlen(K.live("s1")) == 0 and r.xlen(K.results) == 600
    assert not Path(tmp_path / "data").exists() or not list(Path(tmp_path / "data").rglob("*.part-*"))


def test_prefetch_option_of_symphony_worker():
    import pytest

    from symphony.engine import ConfigError
    from symphony.workers.cli import build_parser, options_from_args

    def opts(*argv):
        return options_from_args(build_parser().parse_args(["--redis", "redis://127.0.0.1:1/0", *argv]))

    assert opts().prefetch == 32
    assert opts("--prefetch", "1").prefetch == 1
    with pytest.raises(ConfigError):
        opts("--prefetch", "0")


@pytest.mark.slow
def test_a_host_lost_while_holding_prefetched_tasks_loses_none_of_them(engine, r, redis_url, tmp_path):
    """SIGKILL a worker host mid-run while its short tasks are prefetched: another worker reclaims
    whatever it held (reported or not) and every item completes exactly once in the accounting."""
    from tests.helpers import wait_until

    stage = {"name": "work", "pool": "p", "handler": "tests.handlers:ok", "params": {"seconds": 0.001},
             "output": "{root}/{session}/{stage}/{item}.json"}
    write_pipeline(tmp_path / "pipe.yaml", [stage])
    items = [f"i{n:04d}" for n in range(1500)]
    path = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", items, root=str(tmp_path / "data"))
    initialize_session(engine, load_session(path))
    doomed = WorkerRun(redis_url, "--processes", "1", "--name", "doomed", log_dir=tmp_path, heartbeat=0.5,
                       cwd=tmp_path)
    rescuer = None
    try:
        wait_until(lambda: stats(r).get("work|completed", 0) >= 200, timeout=60, message="the run to get going")
        doomed.kill_group()
        rescuer = WorkerRun(redis_url, "--processes", "1", "--burst", "--name", "rescuer", log_dir=tmp_path,
                            heartbeat=0.5, cwd=tmp_path)
        assert rescuer.wait(120) == 0, rescuer.output()
    finally:
        doomed.stop()
        if rescuer is not None:
            rescuer.stop()
    counts = stats(r)
    assert counts["work|completed"] == 1500 and counts["work|running"] == 0, counts
    assert counts.get("work|reclaimed", 0) >= 1, counts
    assert r.hlen(K.live("s1")) == 0 and r.llen(K.queue("work", "s1")) == 0
    assert all((tmp_path / "data" / "s1" / "work" / f"{i}.json").is_file() for i in items)


def test_only_the_oldest_task_of_a_dead_workers_batch_is_charged_and_order_is_kept(engine, r):
    link = setup(engine)
    batch = claim_batch(link, 3)
    engine.reclaim_worker("w1", force=True, reason="test")
    head = [json.loads(m) for m in r.lrange(K.queue("a", "s1"), 0, 2)]
    assert [m["i"] for m in head] == [c.task.item for c in batch]  # same order as claimed
    assert [m["a"] for m in head] == [1, 0, 0]  # the one that was running is charged, the rest not


def test_a_batch_with_one_attempt_left_fails_only_the_task_that_ran(engine, r):
    engine.register_session(make_record(max_attempts=1), items=3)
    engine.enqueue("s1", "a", [(f"i{n}", None) for n in range(1, 4)])
    link = engine.worker_link("w1", ["a"])
    claim_batch(link, 3)
    report = engine.reclaim_worker("w1", force=True, reason="test")
    assert (report.failed, report.requeued) == (1, 2)
    assert json.loads(r.hget(K.outcomes("s1"), "i1"))["state"] == "failed"
    assert [json.loads(m)["i"] for m in r.lrange(K.queue("a", "s1"), 0, -1)] == ["i2", "i3"]
