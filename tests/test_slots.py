"""Every atomic step touches one hash slot (symphony/engine/keys.py), so the same code runs on one
server and on a Redis Cluster: a structural check on one server (every script call's KEYS hash to
one slot, computed with redis-py's CRC16), and the same workload on a real 3-master cluster
(tests/redis_cluster.py), where a step crossing slots is refused by the server (CROSSSLOT)."""
from __future__ import annotations

import pytest

from symphony.engine import Engine, Finish, Outcome, OutcomeKind, resolve_redis
from symphony.engine.heal import heal, locate
from symphony.engine.keys import DEFAULT_KEYS as K
from symphony.engine.keys import slot_of
from symphony.engine.scripts import Lua, load_all
from tests.helpers import held, wait_until
from tests.test_engine_queue import make_record


@pytest.fixture
def slot_checks(monkeypatch):
    """Record every script call; a call whose keys span slots is a violation."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    plain, queue = Lua.__call__, Lua.queue

    def called(self, client, keys, args, **kw):
        calls.append((self.name, tuple(keys)))
        return plain(self, client, keys, args, **kw)

    def queued(self, pipe, keys, args, **kw):
        calls.append((self.name, tuple(keys)))
        return queue(self, pipe, keys, args, **kw)

    monkeypatch.setattr(Lua, "__call__", called)
    monkeypatch.setattr(Lua, "queue", queued)
    return calls


def crossing(calls) -> list[tuple[str, tuple[str, ...]]]:
    return [(name, keys) for name, keys in calls if len({slot_of(k) for k in keys}) > 1]


def run_batch(link, outcome_for, want: int = 1, rounds: int = 60) -> int:
    """Claim and finish until nothing is left for the link; returns how many tasks ran."""
    ran = 0
    pending: list[Finish] = []
    idle = 0
    for _ in range(rounds):
        result = link.step(pending, want=want)
        pending = []
        for c in result.batch:
            ran += 1
            pending.append(outcome_for(c))
        if not result.batch and not result.eligible:
            idle += 1
            if idle > 3:
                break
        else:
            idle = 0
    if pending:
        link.step(pending, claim=False)
    return ran


def workload(engine: Engine, r) -> dict:
    """Enqueue, claim and finish with every outcome, prefetch, a limited stage, steering, a dead
    worker reclaimed, repair's heal, cancel, purge and a clean retire: the engine's atomic steps."""
    for name in ("s1", "s2", "s3"):
        engine.register_session(make_record(name, max_attempts=2), items=6)
    engine.enqueue("s1", "a", [(f"i{n}", None, n) for n in range(6)])
    engine.enqueue("s2", "a", [(f"i{n}", None, n) for n in range(6)])
    engine.enqueue("s3", "a", [("i0", None, 0), ("i1", None, 1)])
    engine.set_priority("s2", 5)
    engine.pause("s3")
    link = engine.worker_link("w1", ["a", "b"])
    link.beat(5, 12.5, {"name": "w1"})
    seen: set[tuple[str, str, str]] = set()

    def outcome_for(c):
        t = c.task
        first = (t.session, t.stage, t.item) not in seen
        seen.add((t.session, t.stage, t.item))
        if t.stage == "a" and t.item == "i1" and first:
            return Finish(c, Outcome(OutcomeKind.RETRY, error="once more", delay_s=0.0), attempts=1)
        if t.stage == "a" and t.item == "i2" and first:
            return Finish(c, Outcome(OutcomeKind.HANDBACK))
        if t.stage == "a" and t.item == "i3":
            return Finish(c, Outcome(OutcomeKind.FAILED, error="bad row"), attempts=1)
        return Finish(c, Outcome(OutcomeKind.DONE, duration_ms=3), next_stage="b" if t.stage == "a" else None)

    ran = run_batch(link, outcome_for, want=3)
    wait_until(lambda: run_batch(link, outcome_for, want=3) == 0 and not held(r, "w1"), message="s1, s2 to drain")
    engine.resume("s3")
    engine.set_stage_limits("a", max_running=1)
    engine.enqueue("s3", "a", [("i2", None, 2)])
    ran += run_batch(link, outcome_for, want=4)
    engine.set_stage_limits("a", max_running=None)
    # a worker that dies holding a task: reclaimed (the session slot), forgotten (the fleet slot)
    engine.enqueue("s3", "a", [("i4", None, 4), ("i5", None, 5)])
    dead = engine.worker_link("dead", ["a"])
    dead.beat(5, 12.5, {"name": "dead"})
    got = None
    for _ in range(5):
        got = got or dead.step(want=2).claimed
    report = engine.reclaim_worker("dead", force=True, reason="test")
    ran += run_batch(link, outcome_for, want=2)
    # repair's look at a session, healed; then cancel and purge
    where = locate(engine.client, engine.keys, "s1", ("a", "b"))
    healed = heal(engine.client, engine.keys, where, ("a", "b"))
    engine.enqueue("s2", "a", [("i3", None, 3)])
    engine.cancel("s2")
    purged = engine.purge("s2", force=True)
    retired = link.retire()
    return {"ran": ran, "reclaimed": report.requeued, "forgotten": report.forgotten, "healed": healed,
            "purged": purged.keys_deleted if hasattr(purged, "keys_deleted") else purged, "retired": retired,
            "s1": r.hgetall(K.stats("s1")), "s3": r.hgetall(K.stats("s3")), "claimed": got is not None}


def check(out: dict) -> None:
    s1, s3 = out["s1"], out["s3"]
    assert s1["a|failed"] == "1" and s1["a|retried"] == "1" and s1["b|done"] == "5", s1
    assert s1["a|running"] == "0" and s1["b|running"] == "0"
    assert out["claimed"] and out["reclaimed"] == 2 and out["forgotten"], out
    assert s3["a|running"] == "0" and s3["b|done"] == "5", s3  # i0, i1, i2 (limited), i4, i5 (reclaimed)
    assert out["retired"]


def test_every_script_call_touches_one_slot(engine, r, slot_checks):
    out = workload(engine, r)
    check(out)
    used = {name for name, _ in slot_checks}
    assert {"enqueue", "claim", "finish", "fleet", "reclaim", "forget", "heartbeat", "heal", "cancel",
            "unclaim"} <= used, used
    assert crossing(slot_checks) == []
    assert not r.exists(K.inflight("s2", "w1")) and r.zscore(K.ready("a"), "s2") is None


@pytest.mark.cluster
@pytest.mark.slow
def test_the_same_workload_runs_on_a_redis_cluster(cluster_url):
    engine = Engine(resolve_redis(cluster_url))
    try:
        load_all(engine.client)
        out = workload(engine, engine.client)
        check(out)
        # the session's keys live in its slot, on one node; the fleet's in another slot
        assert len({slot_of(k) for k in (K.queue("a", "s1"), K.stats("s1"), K.inflight("s1", "w1"),
                                          K.deadletter("s1"), K.live("s1"))}) == 1
        assert slot_of(K.workers) == slot_of(K.ready("a")) == slot_of(K.results) != slot_of(K.stats("s1"))
        # a worker whose lease lapses: found by lapsed.lua, reaped (judged, then its session's slot)
        engine.enqueue("s1", "a", [("i3", None, 3)])  # failed before: enqueued again
        gone = engine.worker_link("gone", ["a"])
        gone.beat(0.1, 0.3, {"name": "gone"})
        taken = None
        for _ in range(5):
            taken = taken or gone.step().claimed
        assert taken is not None and held(engine.client, "gone") == [taken.raw]
        wait_until(lambda: [r.requeued for r in engine.reap()] == [1], message="the lapsed lease to be reaped")
        assert held(engine.client, "gone") == [] and engine.client.zscore(K.workers, "gone") is None
        assert engine.client.llen(K.queue("a", "s1")) == 1
    finally:
        engine.close()


def test_a_session_with_work_that_left_its_ready_set_is_named_again_by_a_heartbeats_sweep(engine, r):
    engine.register_session(make_record("s1"), items=2)
    engine.enqueue("s1", "a", [("i1", None, 0)])
    r.zrem(K.ready("a"), "s1")  # as if lost between the two steps
    link = engine.worker_link("w1", ["a"])
    r.delete(K.sweep_lock)
    link.beat(5, 12.5, {})
    assert r.zscore(K.ready("a"), "s1") is not None
    assert r.pttl(K.sweep_lock) > 0  # at most one sweep per 30 s over the fleet
    r.zrem(K.ready("a"), "s1")
    link.beat(5, 12.5, {})
    assert r.zscore(K.ready("a"), "s1") is None  # not yet: the lock holds
    assert link.step().claimed is None  # no hint: nothing found
    r.delete(K.sweep_lock)
    link.beat(5, 12.5, {})
    assert link.step().claimed is None and link.step().claimed.task.item == "i1"


def test_a_claimer_keeps_a_session_in_the_ready_set_when_work_was_added_after_its_hint(engine, r):
    """The claim found the queue empty, but work was added (and named) after the claimer read its
    hint: its removal is refused (the session's version changed), so the work is found."""
    engine.register_session(make_record("s1"), items=3)
    engine.enqueue("s1", "a", [("i1", None, 0)])
    link = engine.worker_link("w1", ["a"])
    assert link.step().claimed is None and link.hint[:2] == ("a", "s1")  # the hint, with its version
    r.lpop(K.queue("a", "s1"))  # the queue empties behind the hint's back
    engine.enqueue("s1", "a", [("i2", None, 1)])  # work added after the hint was read: its version moves
    r.lpop(K.queue("a", "s1"))
    result = link.step()  # claims nothing; its drop is refused
    assert result.claimed is None and r.zscore(K.ready("a"), "s1") is not None
    link.step()  # nothing added since its new hint: this empty claim takes it out
    assert r.zscore(K.ready("a"), "s1") is None and r.hget(K.ready_version("a"), "s1") is None


def _old_name(key: str) -> str:
    """The name a key had before hash tags (``{symphony}:workers`` was ``symphony:workers``,
    ``st0:{s1}`` was ``st0:s1``)."""
    return key.replace("{", "").replace("}", "")


@pytest.mark.slow
def test_upgrading_from_the_untagged_layout_drain_then_repair_each_session(redis_url, r, engine, tmp_path):
    """docs/keys.md, upgrading: the earlier layout's keys are not read. With the workers drained
    (nothing in flight), ``symphony repair <session> --file`` registers the session again and
    enqueues exactly what the disk says is missing; the old keys stay until deleted."""
    from tests.test_redis_state import ITEMS, STAGES, drain, repair, session_file, stats

    from symphony.engine import load_session
    from symphony.engine.initialize import initialize_session

    path = session_file(tmp_path, ITEMS, stages=2)
    initialize_session(engine, load_session(path))
    link = engine.worker_link("w1", ["st0", "st1"])
    done = 0
    for _ in range(20):  # half the items through both stages, outputs written as a worker would
        result = link.step()
        for c in result.batch:
            out = tmp_path / "data" / "s1" / c.role / f"{c.item}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("{}")
            nxt = "st1" if c.role == "st0" else None
            link.step(Finish(c, Outcome(OutcomeKind.DONE), next_stage=nxt), claim=False)
            done += c.role == "st1"
        if done >= len(ITEMS) // 2:
            break
    link.retire()
    for key in r.keys("*"):  # the deployment as the earlier version left it
        r.rename(key, _old_name(key))
    assert not r.exists(K.sessions) and r.exists("symphony:sessions")
    out = repair(redis_url, path)
    assert "Redis did not know this session" in out.stdout
    counts = stats(r)
    assert counts.get("st1|done", 0) == done  # recounted from the disk
    drain(redis_url, tmp_path, r)  # every item done at every stage, each counted once
    assert r.exists("symphony:sessions", "symphony:stats:s1") == 2  # the old keys: not read, left as they were
    assert all(stats(r)[f"{s}|done"] == len(ITEMS) for s in STAGES)


@pytest.mark.cluster
@pytest.mark.slow
def test_worker_processes_drain_a_pipeline_on_a_redis_cluster(cluster_url, tmp_path):
    """symphony-worker processes (the real loop, executor, heartbeat and reaper) against the
    3-master cluster: every item through both stages, each counted once, nothing left in flight."""
    from symphony.engine import load_session
    from symphony.engine.initialize import initialize_session
    from tests.helpers import WorkerRun
    from tests.test_redis_state import session_file

    items = [f"i{n}" for n in range(30)]
    path = session_file(tmp_path, items, stages=2)
    engine = Engine(resolve_redis(cluster_url))
    try:
        initialize_session(engine, load_session(path))
        worker = WorkerRun(cluster_url, "--burst", "--processes", "2", log_dir=tmp_path)
        assert worker.wait(120) == 0, worker.output()[-3000:]
        stats = engine.client.hgetall(K.stats("s1"))
        assert stats["st0|done"] == stats["st1|done"] == str(len(items)), stats
        assert stats["st0|running"] == stats["st1|running"] == "0"
        assert engine.client.hlen(K.live("s1")) == 0 and engine.client.llen(K.queue("st1", "s1")) == 0
        assert "Traceback" not in worker.output(), worker.output()[-3000:]
    finally:
        engine.close()
