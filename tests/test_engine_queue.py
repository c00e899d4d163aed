"""The engine's atomic steps against a real Redis: enqueue, claim, finish, retry, reclaim, grace."""
from __future__ import annotations

import json
import time

import pytest

from symphony.engine import Finish, Handler, Outcome, OutcomeKind, Pipeline, SessionConflict, SessionRecord, Stage
from tests.helpers import wait_until
from tests.redis_cluster import every_client


def make_record(name="s1", stages=("a", "b"), max_attempts=3, root="/tmp/root") -> SessionRecord:
    pipeline = Pipeline("p", tuple(Stage(s, Handler("python", target="tests.handlers:ok"), pool="pool1",
                                         output="{root}/{session}/{stage}/{item}.json", max_attempts=max_attempts)
                                   for s in stages))
    return SessionRecord(name=name, pipeline=pipeline, root=root)


@pytest.fixture
def session(engine):
    record = make_record()
    engine.register_session(record, items=3)
    return record


def claim(link, tries=5):
    for _ in range(tries):
        result = link.step()
        if result.claimed:
            return result.claimed
    return None


def test_queue_is_a_plain_list_named_role_session(engine, r, session):
    result = engine.enqueue("s1", "a", [("i1", None), ("i2", {"vines": 3})])
    assert (result.added, result.skipped) == (2, 0)
    assert r.type("a:s1") == "list"
    messages = [json.loads(m) for m in r.lrange("a:s1", 0, -1)]
    assert messages == [{"i": "i1", "s": "s1", "t": "a", "a": 0}, {"i": "i2", "s": "s1", "t": "a", "a": 0, "m": {"vines": 3}}]


def test_enqueue_twice_never_duplicates(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None), ("i2", None)])
    again = engine.enqueue("s1", "a", [("i1", None), ("i2", None), ("i3", None)])
    assert (again.added, again.skipped) == (1, 2)
    assert r.llen("a:s1") == 3


def test_enqueue_skips_items_in_flight_at_any_stage(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a", "b"])
    claimed = claim(link)
    link.step(Finish(claimed, Outcome(OutcomeKind.DONE), next_stage="b"))  # i1 now queued at b
    assert engine.enqueue("s1", "a", [("i1", None)]).skipped == 1
    assert engine.enqueue("s1", "b", [("i1", None)]).skipped == 1


def test_claim_moves_into_inflight_and_counts_running(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    claimed = claim(link)
    assert claimed.task.item == "i1"
    assert r.llen("a:s1") == 0
    assert r.lrange("symphony:inflight:w1", 0, -1) == [claimed.raw]
    assert r.hget("symphony:stats:s1", "a|running") == "1"


def test_finish_done_moves_accounting_and_enqueues_next_stage(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    claimed = claim(link)
    result = link.step(Finish(claimed, Outcome(OutcomeKind.DONE, duration_ms=5), next_stage="b"))
    assert result.finished == "done"
    assert r.llen("symphony:inflight:w1") == 0
    stats = r.hgetall("symphony:stats:s1")
    assert stats["a|running"] == "0" and stats["a|completed"] == "1" and stats["b|enqueued"] == "1"
    assert [json.loads(m) for m in r.lrange("b:s1", 0, -1)] == [{"i": "i1", "s": "s1", "t": "b", "a": 0}]
    assert r.hget("symphony:live:s1", "i1") == "b"
    entry = r.xrevrange("symphony:results", count=1)[0][1]
    assert entry["st"] == "completed" and entry["i"] == "i1" and entry["t"] == "a"


def test_last_stage_done_forgets_the_item(engine, r, session):
    engine.enqueue("s1", "b", [("i1", None)])
    link = engine.worker_link("w1", ["b"])
    link.step(Finish(claim(link), Outcome(OutcomeKind.DONE), next_stage=None))
    assert r.hlen("symphony:live:s1") == 0
    assert r.hget("symphony:stats:s1", "b|completed") == "1"


def test_retry_waits_for_its_backoff_then_runs_again(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    claimed = claim(link)
    link.step(Finish(claimed, Outcome(OutcomeKind.RETRY, error="x", delay_s=0.4), attempts=1))
    assert r.hget("symphony:stats:s1", "a|delayed") == "1"
    assert claim(link, tries=2) is None  # not due yet
    again = wait_until(lambda: claim(link, tries=1), timeout=5, message="the retry to become due")
    assert again.task.attempt == 1
    assert r.hget("symphony:stats:s1", "a|delayed") == "0"


def test_failure_is_recorded_with_its_reason(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    link.step(Finish(claim(link), Outcome(OutcomeKind.FAILED, error="RuntimeError: boom", stderr="trace..."), attempts=3))
    record = json.loads(r.hget("symphony:outcomes:s1", "i1"))
    assert record["state"] == "failed" and record["error"] == "RuntimeError: boom" and record["stderr"] == "trace..."
    assert r.hget("symphony:stats:s1", "a|failed") == "1"
    assert r.hlen("symphony:live:s1") == 0
    # enqueuing it again moves it out of "failed" (one atomic move between accounting states)
    engine.enqueue("s1", "a", [("i1", None)])
    assert r.hget("symphony:stats:s1", "a|failed") == "0"
    assert not r.hexists("symphony:outcomes:s1", "i1")


def test_timeout_is_recorded_as_timed_out(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    link.step(Finish(claim(link), Outcome(OutcomeKind.TIMED_OUT, error="timed out after 1s"), attempts=1))
    assert r.hget("symphony:stats:s1", "a|timed_out") == "1"
    assert json.loads(r.hget("symphony:outcomes:s1", "i1"))["state"] == "timed_out"


def test_handback_returns_the_task_to_the_head_unchanged(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None), ("i2", None)])
    link = engine.worker_link("w1", ["a"])
    claimed = claim(link)
    link.step(Finish(claimed, Outcome(OutcomeKind.HANDBACK), attempts=1), claim=False)
    assert r.lindex("a:s1", 0) == claimed.raw
    assert r.hget("symphony:stats:s1", "a|running") == "0"


def test_finish_after_lease_was_reclaimed_reports_lost(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    claimed = claim(link)
    report = engine.reclaim_worker("w1", force=True)
    assert report.requeued == 1
    result = link.step(Finish(claimed, Outcome(OutcomeKind.DONE), next_stage="b"), claim=False)
    assert result.finished == "lost"
    assert r.llen("b:s1") == 0  # the reclaimed copy will do it, not this one
    assert json.loads(r.lindex("a:s1", 0))["a"] == 1  # attempt count raised


def test_reclaim_of_last_attempt_records_failure(engine, r):
    engine.register_session(make_record(max_attempts=1), items=1)
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    claim(link)
    report = engine.reclaim_worker("w1", force=True)
    assert report.failed == 1
    assert "lost" in json.loads(r.hget("symphony:outcomes:s1", "i1"))["error"]


def test_lapsed_lease_is_reaped_by_any_process(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("dead", ["a"])
    link.beat(0.1, 0.3, {"host": "h"})
    claim(link)
    assert engine.reap() == []  # lease still valid
    wait_until(lambda: engine.reap(), timeout=5, message="the lease to lapse and be reaped")
    assert r.llen("a:s1") == 1 and r.llen("symphony:inflight:dead") == 0
    assert r.zscore("symphony:workers", "dead") is None
    assert any(f.get("kind") == "worker_lost" for _, f in r.xrange("symphony:events"))


def test_live_lease_is_not_reaped(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("alive", ["a"])
    link.beat(5, 12.5, {})
    claim(link)
    assert engine.reap(["alive"]) and r.llen("symphony:inflight:alive") == 1  # re-checked atomically


def test_grace_window_after_an_outage_protects_live_leases(engine, r, session):
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    link.beat(0.2, 0.5, {})
    claim(link)
    # simulate Redis having been unreachable: nobody was heard for a minute, and w1's lease ran
    # out during that silence (a lease that ran out before it began belongs to a dead worker)
    silent_since = int(r.time()[0] * 1000) - 60_000
    r.hset("symphony:clock", "at", silent_since)
    r.zadd("symphony:workers", {"w1": silent_since + 1000})
    other = engine.worker_link("w2", ["a"])
    beat = other.beat(0.2, 0.5, {})
    assert beat.grace_ms > 0 and beat.lapsed == ()
    assert engine.reap(["w1"])[0].skipped == "grace"
    assert r.llen("symphony:inflight:w1") == 1


def test_fairness_between_sessions_of_one_role(engine, r):
    for name in ("s1", "s2"):
        engine.register_session(make_record(name=name), items=20)
        engine.enqueue(name, "a", [(f"i{n}", None) for n in range(20)])
    link = engine.worker_link("w1", ["a"])
    order = []
    for _ in range(10):
        claimed = claim(link)
        order.append(claimed.session)
        link.step(Finish(claimed, Outcome(OutcomeKind.DONE), next_stage="b"), claim=False)
    assert order.count("s1") == 5 and order.count("s2") == 5


def test_cancelled_session_is_not_claimed(engine, r, session):
    from symphony.engine.registry import set_session_state

    engine.enqueue("s1", "a", [("i1", None)])
    set_session_state(engine.client, engine.keys, "s1", "cancelled")
    assert claim(engine.worker_link("w1", ["a"])) is None


def test_same_name_different_definition_is_refused(engine, session):
    other = make_record(stages=("a", "b", "c"))
    with pytest.raises(SessionConflict, match="already registered"):
        engine.register_session(other)


def test_foreign_key_with_a_queue_name_is_refused(engine, r):
    r.set("a:s9", "someone else's")
    with pytest.raises(SessionConflict, match="clash"):
        engine.register_session(make_record(name="s9"))


def test_idle_worker_blocks_on_the_bell_and_wakes_on_enqueue(engine, r, session):
    import threading

    link = engine.worker_link("w1", ["a"])
    woke = {}

    def waiter():
        start = time.monotonic()
        woke["bell"] = link.wait_for_work(5)
        woke["after"] = time.monotonic() - start

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: any(c.get("cmd") == "blpop" for c in every_client(r)), timeout=5, message="BLPOP")
    engine.enqueue("s1", "a", [("i1", None)])
    thread.join(5)
    assert woke["bell"] is True and woke["after"] < 4


def test_the_console_reaper_also_respects_an_outage(engine, r, session):
    """After Redis was paused, a process that does not beat (the console) must not reap the
    leases of workers that simply could not reach Redis."""
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    link.beat(0.2, 0.5, {})
    claim(link)
    silent_since = int(r.time()[0] * 1000) - 60_000
    # nobody beat for a minute (the clock as the previous version wrote it: ms:heartbeat:lease),
    # and w1's lease ran out during that silence
    r.set("symphony:clock", f"{silent_since}:200:500")
    r.zadd("symphony:workers", {"w1": silent_since + 400})
    assert engine.reap() == []  # grace window opened by the reaper itself
    assert r.pttl("symphony:grace") > 0 and r.llen("symphony:inflight:w1") == 1
    # once the window is over and w1 still does not beat, it is reaped
    wait_until(lambda: engine.reap(), timeout=5, message="the grace window to end")
    assert r.llen("symphony:inflight:w1") == 0 and r.llen("a:s1") == 1
