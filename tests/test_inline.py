"""``isolation: inline``: a stage's Python handlers called in the worker process itself.

Faster than the executor (no frame to another process per batch), with its trade-offs kept
safe: a handler still running at its timeout ends its worker process (after the finished
tasks' reports are sent), the supervisor reclaims the task at once and it runs again.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
from pathlib import Path

import psutil
import pytest

from symphony.engine import load_session
from symphony.engine.initialize import initialize_session
from symphony.spec.pipeline import pipeline_from_dict
from symphony.spec.problems import SpecError
from tests.helpers import WorkerRun, wait_until, write_pipeline, write_session


def stats(r, session: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(K.stats(session)).items()}


def session_file(tmp_path: Path, handler: str, items, *, isolation="inline", timeout=60.0, max_attempts=1,
                 params=None) -> Path:
    stage = {"name": "work", "pool": "p", "handler": handler, "output": "{root}/{session}/{stage}/{item}.json",
             "timeout": timeout, "max_attempts": max_attempts, "retry_backoff": 0.05, "params": params or {}}
    if isolation:
        stage["isolation"] = isolation
    write_pipeline(tmp_path / "pipe.yaml", [stage])
    return write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", items, root=str(tmp_path / "data"))


def test_isolation_is_checked_and_kept_in_the_definition():
    stages = [{"name": "a", "handler": "m:f", "isolation": "inline"}, {"name": "b", "handler": "m:f"}]
    pipeline = pipeline_from_dict({"pipeline": "p", "stages": stages})
    assert [s.isolation for s in pipeline.stages] == ["inline", "executor"]
    assert pipeline.stages[0].to_dict()["isolation"] == "inline" and "isolation" not in pipeline.stages[1].to_dict()
    assert pipeline_from_dict(pipeline.to_dict()).stages[0].isolation == "inline"
    defaults = pipeline_from_dict({"pipeline": "p", "defaults": {"isolation": "inline"},
                                   "stages": [{"name": "a", "handler": "m:f"}, {"name": "b", "command": ["true"]}]})
    assert [s.isolation for s in defaults.stages] == ["inline", "executor"]  # a command is its own process
    for stage, words in (({"name": "a", "command": ["true"], "isolation": "inline"}, "only applies to a Python"),
                         ({"name": "a", "handler": "m:f", "isolation": "thread"}, "must be one of executor, inline")):
        with pytest.raises(SpecError) as info:
            pipeline_from_dict({"pipeline": "p", "stages": [stage]})
        assert "stages[0].isolation" in str(info.value) and words in str(info.value)


@pytest.mark.slow
def test_inline_handlers_run_in_the_worker_process_with_their_job_store(engine, r, redis_url, tmp_path):
    items = [f"i{n}" for n in range(40)] + ["bad-1"]
    initialize_session(engine, load_session(session_file(tmp_path, "tests.handlers:kv_and_pid", items,
                                                         params={"bad": ["bad-1"]})))
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(90) == 0, worker.output()
    log = worker.output()
    worker.stop()
    outputs = [json.loads((tmp_path / "data" / "s1" / "work" / f"{i}.json").read_text()) for i in items[:-1]]
    pids = {o["pid"] for o in outputs}
    assert len(pids) == 1 and all(o["kv"] == o["item"] for o in outputs)
    # the worker process ran them (no executor: its markers carry the same pid as the outputs)
    marker_pids = {int(p.name.rsplit("-", 1)[1]) for p in (tmp_path / "data" / "markers").iterdir()}
    assert marker_pids == pids
    counts = stats(r, "s1")
    assert counts["work|completed"] == 40 and counts["work|failed"] == 1 and counts["work|running"] == 0, counts
    record = json.loads(r.hget(K.outcomes("s1"), "bad-1"))
    assert record["state"] == "failed" and "RuntimeError: boom for bad-1" in record["error"]
    assert "died" not in log, log


@pytest.mark.slow
def test_an_inline_handler_past_its_timeout_ends_its_process_and_runs_again(engine, r, redis_url, tmp_path):
    initialize_session(engine, load_session(session_file(tmp_path, "tests.handlers:hang_first_attempt",
                                                         ["x1"], timeout=1.0, max_attempts=2,
                                                         params={"hang": 60})))
    worker = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path)
    try:
        out = tmp_path / "data" / "s1" / "work"
        wait_until(lambda: (out / "x1.json").is_file(), timeout=60, message="the task done on its second attempt")
        wait_until(lambda: stats(r, "s1").get("work|completed") == 1, message="completion accounting")
        starts = sorted(p.name for p in (tmp_path / "data" / "markers").glob("started-work-x1-*"))
        assert [name.split("-")[3] for name in starts] == ["1", "2"], starts  # attempt 1 hung, attempt 2 ran
        assert json.loads((out / "x1.json").read_text())["attempt"] == 2
        counts = stats(r, "s1")
        assert counts["work|reclaimed"] == 1 and counts["work|running"] == 0, counts
        log = worker.output()
        assert "overran its timeout" in log and "a handler run inline overran its timeout" in log, log
        assert psutil.Process(worker.process.pid).is_running()  # the supervisor goes on with a new process
    finally:
        worker.stop()


@pytest.mark.slow
def test_an_idle_worker_starts_its_executor_before_the_first_python_task(engine, r, redis_url, tmp_path):
    initialize_session(engine, load_session(session_file(tmp_path, "tests.handlers:ok", ["a"], isolation=None)))
    worker = WorkerRun(redis_url, "--processes", "2", log_dir=tmp_path)
    try:
        def executors() -> int:
            try:
                procs = psutil.Process(worker.process.pid).children(recursive=True)
            except psutil.Error:
                return 0
            return sum(1 for p in procs if "symphony.workers.executor_main" in " ".join(p.cmdline()))

        # one task, two worker processes: the one that never ran it has its executor ready too
        wait_until(lambda: executors() == 2, timeout=30, message="both worker processes' executors")
        wait_until(lambda: stats(r, "s1").get("work|completed") == 1, message="the task")
    finally:
        worker.stop()
