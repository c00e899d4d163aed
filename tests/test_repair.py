"""symphony repair: outputs on disk are the source of truth."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import itertools
import pytest
import json
import shutil
import time
from pathlib import Path


from symphony.engine import load_session
from tests.helpers import WorkerRun, wait_until, write_pipeline, write_session

STAGES = ["s1", "s2", "s3", "s4"]



def four_stage(tmp_path: Path, items: list[str], name: str = "rep", seconds: float = 0.0) -> Path:
    write_pipeline(tmp_path / "four.yaml", [
        {"name": s, "pool": "p", "handler": "tests.handlers:ok", "output": "{root}/{session}/{stage}/{item}.json",
         "params": {"seconds": seconds}, "max_attempts": 2, "retry_backoff": 0.05} for s in STAGES])
    return write_session(tmp_path / f"{name}.yaml", name, "four.yaml", items, root="data")


def make_outputs(tmp_path: Path, session: str, done: dict[str, set[str]]) -> None:
    for stage, items in done.items():
        folder = tmp_path / "data" / session / stage
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            (folder / f"{item}.json").write_text("{}")


# every subset of stages with an output: 16 partial states of a 4-stage pipeline
SUBSETS = [set(c) for n in range(len(STAGES) + 1) for c in itertools.combinations(STAGES, n)]


def expected_next(subset: set[str]) -> str | None:
    if not subset:
        return "s1"
    furthest = max(STAGES.index(s) for s in subset)
    return None if furthest == len(STAGES) - 1 else STAGES[furthest + 1]


def test_repair_after_each_possible_partial_state(cli, r, tmp_path):
    items = [f"i{n:02d}" for n in range(len(SUBSETS))]
    path = four_stage(tmp_path, items)
    done: dict[str, set[str]] = {s: set() for s in STAGES}
    for item, subset in zip(items, SUBSETS):
        for stage in subset:
            done[stage].add(item)
    make_outputs(tmp_path, "rep", done)
    code, out, err = cli("repair", "rep", "--file", str(path), "--json", "--items")
    assert code == 0, err
    plan = json.loads(out)
    got = {s["stage"]: set(s["items"]) for s in plan["stages"]}
    for item, subset in zip(items, SUBSETS):
        want = expected_next(subset)
        for stage in STAGES:
            assert (item in got[stage]) == (stage == want), (item, subset, stage)
    assert plan["complete"] == sum(1 for s in SUBSETS if "s4" in s) == 8
    assert plan["to_enqueue"] == 8 and not plan["registered"]
    # and the queues hold exactly that, in Redis
    for stage in STAGES:
        queued = {json.loads(m)["i"] for m in r.lrange(K.queue(stage, "rep"), 0, -1)}
        assert queued == got[stage]
    assert plan["stages"][1]["reasons"] == {"s1 done, s2 missing": 1}
    # each stage counts done exactly the items whose output is on disk (Redis knew nothing)
    assert {s: int(r.hget(K.stats("rep"), f"{s}|done") or 0) for s in STAGES} == {
        s: len(done[s]) for s in STAGES}


def test_dry_run_changes_nothing_and_explains(cli, r, tmp_path):
    path = four_stage(tmp_path, ["a", "b", "c"])
    make_outputs(tmp_path, "rep", {"s1": {"a", "b"}, "s2": {"a"}})
    code, out, _ = cli("repair", "rep", "--file", str(path), "--dry-run")
    assert code == 0
    assert "nothing enqueued (--dry-run)" in out
    assert "1 nothing done yet" in out and "1 s1 done, s2 missing" in out and "1 s2 done, s3 missing" in out
    assert r.dbsize() == 0


def test_repair_twice_enqueues_nothing_the_second_time(cli, r, tmp_path):
    path = four_stage(tmp_path, [f"i{n}" for n in range(10)])
    make_outputs(tmp_path, "rep", {"s1": {"i1", "i2"}, "s2": {"i2"}})
    assert cli("repair", "rep", "--file", str(path))[0] == 0
    before = {s: r.llen(K.queue(s, "rep")) for s in STAGES}
    done = r.hgetall(K.stats("rep"))
    code, out, _ = cli("repair", "rep", "--file", str(path), "--json")
    plan = json.loads(out)
    assert plan["to_enqueue"] == 0 and plan["in_progress"] == 10
    assert {s: r.llen(K.queue(s, "rep")) for s in STAGES} == before
    assert r.hgetall(K.stats("rep")) == done
    assert (r.hget(K.stats("rep"), "s1|done"), r.hget(K.stats("rep"), "s2|done")) == ("2", "1")


def test_failed_items_are_reported_not_retried_unless_asked(cli, r, engine, tmp_path):
    path = four_stage(tmp_path, ["a", "b"])
    assert cli("repair", "rep", "--file", str(path))[0] == 0
    from symphony.engine import Finish, Outcome, OutcomeKind

    link = engine.worker_link("w", ["s1"])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    link.step(Finish(claimed, Outcome(OutcomeKind.FAILED, error="boom"), attempts=2), claim=False)
    plan = json.loads(cli("repair", "rep", "--file", str(path), "--json", "--dry-run")[1])
    assert plan["failed"] == 1 and plan["to_enqueue"] == 0
    plan = json.loads(cli("repair", "rep", "--file", str(path), "--json", "--retry-failed")[1])
    assert plan["to_enqueue"] == 1 and plan["stages"][0]["reasons"] == {"failed before (--retry-failed)": 1}
    assert r.hget(K.stats("rep"), "s1|failed") == "0"


@pytest.mark.slow
def test_repair_racing_with_busy_workers_creates_no_duplicates(cli, r, redis_url, tmp_path):
    items = [f"i{n:02d}" for n in range(40)]
    path = four_stage(tmp_path, items, seconds=0.02)
    # half the items are partway through already
    make_outputs(tmp_path, "rep", {"s1": set(items[:20]), "s2": set(items[:10])})
    assert cli("repair", "rep", "--file", str(path))[0] == 0
    worker = WorkerRun(redis_url, "--processes", "2", log_dir=tmp_path)
    try:
        runs = 0
        deadline = time.monotonic() + 60  # a deadline, not a count: workers start slowly under load
        while int(r.hget(K.stats("rep"), "s4|completed") or 0) < 40:
            assert cli("repair", "rep", "--file", str(path))[0] == 0
            runs += 1
            done = {s: int(r.hget(K.stats("rep"), f"{s}|done") or 0) for s in STAGES}
            assert all(n <= 40 for n in done.values()), done
            assert time.monotonic() < deadline, f"the pipeline did not drain: {r.hgetall(K.stats('rep'))}"
        wait_until(lambda: r.hlen(K.live("rep")) == 0, message="nothing left in progress")
    finally:
        worker.stop()
    stats = {k: int(v) for k, v in r.hgetall(K.stats("rep")).items()}
    # every task was enqueued exactly once: no duplicates, whatever the interleaving
    assert stats["s1|enqueued"] == 20 and stats["s2|enqueued"] == 30
    assert stats["s3|enqueued"] == 40 and stats["s4|enqueued"] == 40
    assert all(stats[f"{s}|completed"] == stats[f"{s}|enqueued"] for s in STAGES)
    assert all(stats[f"{s}|done"] == 40 for s in STAGES), stats  # repairs while running lost no count
    assert runs >= 2


@pytest.mark.slow
def test_repair_after_flushall_restores_every_missing_task(cli, r, redis_url, tmp_path):
    items = [f"i{n:02d}" for n in range(30)]
    path = four_stage(tmp_path, items)
    assert cli("initialize", str(path))[0] == 0
    worker = WorkerRun(redis_url, "--processes", "2", "--burst", log_dir=tmp_path)
    assert worker.wait(60) == 0
    worker.stop()
    # lose some outputs, and Redis loses everything
    shutil.rmtree(tmp_path / "data" / "rep" / "s4")
    for item in items[:5]:
        (tmp_path / "data" / "rep" / "s2" / f"{item}.json").unlink()
        (tmp_path / "data" / "rep" / "s3" / f"{item}.json").unlink()
    r.flushall()
    code, out, err = cli("repair", "rep", "--tasks", str(tmp_path))  # found by name: Redis forgot the file
    assert code == 0, err
    assert "Redis did not know this session" in out and "enqueued 30 task(s): s2 5, s4 25" in out
    # the counts Redis lost, as far as the disk proves them
    assert [int(r.hget(K.stats("rep"), f"{s}|done") or 0) for s in STAGES] == [30, 25, 25, 0]
    worker = WorkerRun(redis_url, "--processes", "2", "--burst", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    spec = load_session(path)
    for stage in spec.pipeline.stages:
        for item in items:
            assert Path(stage.output_path(spec.root, "rep", item)).is_file()
    assert [int(r.hget(K.stats("rep"), f"{s}|done")) for s in STAGES] == [30] * 4
    assert cli("repair", "rep", "--tasks", str(tmp_path), "--json")[1].count('"to_enqueue": 0') == 1


def test_unknown_session_is_a_clear_error(cli, tmp_path):
    code, _, err = cli("repair", "nope", "--tasks", str(tmp_path))
    assert code == 2 and "no session file for 'nope'" in err


def _reference(items, outputs, live, failed, retry_failed):
    """The plan, item by item, the slow obvious way: what plan_repair must agree with."""
    distinct = list(dict.fromkeys(items))
    stage_of = {}
    for item in distinct:
        done = [k for k, listed in enumerate(outputs) if item in listed]
        stage_of[item] = max(done) + 1 if done else 0
    live = set(live) & set(distinct)
    failed = set(failed) & set(distinct)
    held = set() if retry_failed else failed - live
    stages = [[i for i in distinct if stage_of[i] == k and i not in live and i not in held]
              for k in range(len(STAGES))]
    return {"total": len(distinct), "complete": sum(1 for i in distinct if stage_of[i] == len(STAGES)),
            "in_progress": sum(1 for i in live if stage_of[i] != len(STAGES)),
            "failed": sum(1 for i in failed - live if stage_of[i] != len(STAGES)), "stages": stages,
            "retrying": [sum(1 for i in s if i in failed) if retry_failed else 0 for s in stages]}


@pytest.mark.parametrize("seed", range(12))
def test_plan_agrees_with_an_item_by_item_reference(engine, r, tmp_path, seed):
    """Random states: duplicated ids, stray files (temporary names, items no longer in the file),
    items in progress and failed, outputs named alike or differently per stage."""
    import random

    rnd = random.Random(seed)
    pool = [f"i{n:03d}" for n in range(120)]
    items = rnd.sample(pool, 80) + rnd.sample(pool[:40], 5 * (seed % 2))  # odd seeds: duplicates
    alike = seed % 3 != 2
    outputs_of = ["{root}/{session}/{stage}/{item}.json" if alike else f"{{root}}/{{session}}/{{stage}}/{s}-{{item}}.out"
                  for s in STAGES]
    write_pipeline(tmp_path / "four.yaml", [{"name": s, "pool": "p", "handler": "tests.handlers:ok", "output": o}
                                           for s, o in zip(STAGES, outputs_of)])
    path = write_session(tmp_path / "rep.yaml", "rep", "four.yaml", items, root="data")
    outputs = [set(rnd.sample(pool, rnd.randrange(0, 100))) for _ in STAGES]  # pool: some are strays
    for stage, listed, template in zip(STAGES, outputs, outputs_of):
        folder = tmp_path / "data" / "rep" / stage
        folder.mkdir(parents=True)
        name = Path(template).name
        for item in listed:
            (folder / name.format(item=item)).write_text("{}")
        for n in range(rnd.randrange(0, 4)):  # a worker's temporary files
            (folder / (name.format(item=rnd.choice(pool)) + f".tmp{n}")).write_text("")
    live = rnd.sample(pool, 15)
    failed = rnd.sample(pool, 15)
    if live:  # in progress: a live entry and its task message (an entry without one is an orphan repair heals)
        r.hset(K.live("rep"), mapping={i: STAGES[0] for i in live})
        r.rpush(K.queue(STAGES[0], "rep"), *(json.dumps({"i": i, "s": "rep", "t": STAGES[0], "a": 0}) for i in live))
    r.hset(K.outcomes("rep"), mapping={i: json.dumps({"state": rnd.choice(["failed", "timed_out"])})
                                             for i in failed})
    for retry_failed in (False, True):
        plan = engine.plan_repair("rep", file=str(path), retry_failed=retry_failed)
        want = _reference(items, outputs, live, failed, retry_failed)
        assert (plan.total, plan.complete, plan.in_progress, plan.failed) == (
            want["total"], want["complete"], want["in_progress"], want["failed"])
        for stage, items_want, retrying in zip(plan.stages, want["stages"], want["retrying"]):
            assert stage.count == len(items_want), stage.stage
            assert list(stage.items) == items_want, stage.stage
            assert stage.reasons.get("failed before (--retry-failed)", 0) == retrying
