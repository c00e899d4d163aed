"""Progress that is true: DONE counts each item once per stage whatever reruns, repairs or
duplicate executions happen, repair restores what it can prove from disk after Redis lost it,
DONE never exceeds ITEMS, and a session at 100% says it is complete."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
from pathlib import Path

import pytest

from tests.helpers import WorkerRun, write_pipeline, write_session

STAGES = ["s1", "s2", "s3", "s4"]
ITEMS = [f"row-{n:03d}" for n in range(24)]


def session(tmp_path: Path, items=ITEMS, name: str = "prog") -> Path:
    write_pipeline(tmp_path / "four.yaml", [
        {"name": s, "pool": "p", "handler": "tests.handlers:ok", "output": "{root}/{session}/{stage}/{item}.json",
         "max_attempts": 2, "retry_backoff": 0.05} for s in STAGES])
    return write_session(tmp_path / f"{name}.yaml", name, "four.yaml", items, root="data")


def drain(redis_url: str, tmp_path: Path) -> None:
    worker = WorkerRun(redis_url, "--processes", "2", "--burst", log_dir=tmp_path)
    assert worker.wait(120) == 0, worker.output()
    worker.stop()


def sessions(cli) -> dict[str, dict]:
    code, out, err = cli("sessions", "--json")
    assert code == 0, err
    return {s["name"]: s for s in json.loads(out)}


def queues(cli, name: str = "prog") -> dict[str, dict]:
    code, out, err = cli("status", "--json")
    assert code == 0, err
    return {q["role"]: q for q in json.loads(out)["queues"] if q["session"] == name}


def output(tmp_path: Path, stage: str, item: str, name: str = "prog") -> Path:
    return tmp_path / "data" / name / stage / f"{item}.json"


@pytest.mark.slow
def test_rerun_after_deleting_outputs_and_repair_counts_each_item_once(cli, r, redis_url, tmp_path):
    path = session(tmp_path)
    assert cli("initialize", str(path))[0] == 0
    drain(redis_url, tmp_path)
    assert sessions(cli)["prog"]["completed"] == 24
    for item in ITEMS[:4]:
        output(tmp_path, "s4", item).unlink()
    code, out, err = cli("repair", "prog", "--file", str(path))
    assert code == 0 and "s4 4" in out, out + err
    # right after the repair the counts say what the disk says: 20 through the last stage
    s = sessions(cli)["prog"]
    assert (s["completed"], s["state"]) == (20, "active"), s
    assert queues(cli)["s4"]["completed"] == 20 and queues(cli)["s3"]["completed"] == 24
    drain(redis_url, tmp_path)
    s = sessions(cli)["prog"]
    assert s["completed"] == 24 and s["progress"] == 1.0, s  # not 28 (117%)
    q = queues(cli)
    assert all(q[stage]["completed"] == 24 for stage in STAGES), q
    assert q["s4"]["completions"] == 28  # the executions are still there, counted apart


@pytest.mark.slow
def test_flushall_then_repair_restores_the_counts_proven_on_disk(cli, r, redis_url, tmp_path):
    path = session(tmp_path)
    assert cli("initialize", str(path))[0] == 0
    drain(redis_url, tmp_path)
    for item in ITEMS[:5]:  # 19 of 24 complete on disk; 5 stopped after s2
        output(tmp_path, "s4", item).unlink()
        output(tmp_path, "s3", item).unlink()
    r.flushall()
    code, out, err = cli("repair", "prog", "--tasks", str(tmp_path))
    assert code == 0, err
    s = sessions(cli)["prog"]
    assert s["completed"] == 19 and s["items"] == 24, s  # not 0
    q = queues(cli)
    assert [q[stage]["completed"] for stage in STAGES] == [24, 24, 19, 19], q
    drain(redis_url, tmp_path)
    s = sessions(cli)["prog"]
    assert (s["completed"], s["state"]) == (24, "complete"), s


@pytest.mark.slow
def test_rerunning_done_items_never_counts_past_the_items(cli, r, redis_url, tmp_path, engine):
    """Cancel mid-way, resume, retry, enqueue again: however often an item runs, it is done once."""
    path = session(tmp_path, ITEMS[:6])
    assert cli("initialize", str(path))[0] == 0
    drain(redis_url, tmp_path)
    # every item runs s4 a second time (as a duplicate delivery would)
    from symphony.engine import load_session
    from symphony.engine.progress import item_ordinals

    spec = load_session(path)
    ids, ordinals = item_ordinals([i.id for i in spec.items])
    for item in ids:
        output(tmp_path, "s4", item).unlink()
    engine.enqueue("prog", "s4", [(i, None, n) for i, n in zip(ids, ordinals)])
    drain(redis_url, tmp_path)
    s = sessions(cli)["prog"]
    assert s["completed"] == 6 and s["progress"] == 1.0, s
    assert queues(cli)["s4"]["completions"] == 12


def test_a_planted_ordinal_outside_the_session_is_not_counted_and_grows_nothing(cli, r, redis_url, tmp_path):
    path = session(tmp_path, ITEMS[:3])
    assert cli("initialize", str(path))[0] == 0
    r.rpush(K.queue("s1", "prog"), json.dumps({"i": "row-999", "s": "prog", "t": "s1", "a": 0, "o": 4_000_000_000},
                                  separators=(",", ":")))
    r.hset(K.live("prog"), "row-999", "s1")
    drain(redis_url, tmp_path)
    assert queues(cli)["s1"]["completed"] == 3
    assert r.strlen(K.done("prog", "s1")) <= 1  # three items: one byte, not 500 MB
    assert sessions(cli)["prog"]["completed"] == 3


@pytest.mark.slow
def test_a_session_at_100_percent_says_it_is_complete_and_what_to_do(cli, r, redis_url, tmp_path):
    path = session(tmp_path, ITEMS[:4])
    assert cli("initialize", str(path))[0] == 0
    assert sessions(cli)["prog"]["state"] == "active"
    drain(redis_url, tmp_path)
    s = sessions(cli)["prog"]
    assert s["state"] == "complete" and "symphony purge prog" in s["advice"], s
    code, out, _ = cli("sessions")
    assert "complete" in out and "keep it as a record, or 'symphony purge prog'" in out
    code, out, _ = cli("status")
    assert code == 0 and "prog: complete" in out
    snap = json.loads(cli("status", "--json")[1])
    assert snap["sessions"][0]["state"] == "complete" and snap["sessions"][0]["progress"] == 1.0
    # it stays a normal session for the registry: resume enqueues nothing, repair nothing
    code, out, err = cli("initialize", "--resume", str(path))
    assert code == 0 and "0 item(s) enqueued for s1" in out and "4 already done" in out, out + err
    plan = json.loads(cli("repair", "prog", "--file", str(path), "--json")[1])
    assert plan["to_enqueue"] == 0 and plan["complete"] == 4
    assert sessions(cli)["prog"]["state"] == "complete"
    # an output deleted: repair says so, and the session is active again until it is redone
    output(tmp_path, "s4", ITEMS[0]).unlink()
    assert cli("repair", "prog", "--file", str(path))[0] == 0
    s = sessions(cli)["prog"]
    assert s["state"] == "active" and s["completed"] == 3 and s["queued"] == 1, s
    drain(redis_url, tmp_path)
    assert sessions(cli)["prog"]["state"] == "complete"
    # purge needs no --force: nothing is queued or running
    code, out, err = cli("purge", "prog", "--yes")
    assert code == 0, err
    assert not r.exists(K.done("prog", "s1"), K.done("prog", "s4"), K.stats("prog"))


@pytest.mark.slow
def test_a_complete_session_that_was_cancelled_stays_cancelled(cli, r, redis_url, tmp_path):
    path = session(tmp_path, ITEMS[:2])
    assert cli("initialize", str(path))[0] == 0
    drain(redis_url, tmp_path)
    assert cli("cancel", "prog", "--yes")[0] == 0
    s = sessions(cli)["prog"]
    assert s["state"] == "cancelled" and "initialize --resume" in s["advice"], s


def test_an_active_session_with_nothing_left_but_failures_says_retry(cli, r, engine, tmp_path):
    path = session(tmp_path, ITEMS[:1])
    assert cli("initialize", str(path))[0] == 0
    from symphony.engine import Finish, Outcome, OutcomeKind

    link = engine.worker_link("w", ["s1"])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    link.step(Finish(claimed, Outcome(OutcomeKind.FAILED, error="boom"), attempts=2), claim=False)
    s = sessions(cli)["prog"]
    assert s["state"] == "active" and "symphony retry prog" in s["advice"], s


@pytest.mark.slow
def test_cancel_then_resume_reruns_nothing_done_and_never_counts_past_the_items(cli, r, redis_url, tmp_path):
    path = session(tmp_path, ITEMS[:6])
    assert cli("initialize", str(path))[0] == 0
    drain(redis_url, tmp_path)
    assert cli("cancel", "prog", "--yes")[0] == 0
    code, out, err = cli("initialize", "--resume", str(path))
    assert code == 0, err
    drain(redis_url, tmp_path)
    s = sessions(cli)["prog"]
    assert s["completed"] == 6 and s["progress"] == 1.0 and s["state"] == "complete", s
    assert queues(cli)["s4"]["completions"] == 6, "items already through every stage ran again"
