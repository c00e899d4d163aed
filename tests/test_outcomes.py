"""One outcome record: every path that stops an item (a worker's report, the reaper, the
operator's cancel, a report for a cancelled session) writes the same fields, with ``at`` in
the Redis server's milliseconds; ``OutcomeRecord.decode`` is the one parser."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import time

import pytest

from symphony.engine import (Finish, Handler, Outcome, OutcomeKind, OutcomeRecord, Pipeline, SessionRecord,
                             SessionState, Stage)
from symphony.engine.outcomes import InvalidRecord

FIELDS = {"state", "stage", "error", "stderr", "attempts", "worker", "at", "task"}
DAY_S = 86_400


@pytest.fixture
def session(engine):
    stages = tuple(Stage(s, Handler("python", target="tests.handlers:ok"), pool="p",
                         output="{root}/{session}/{stage}/{item}.json", max_attempts=1) for s in ("a", "b"))
    engine.register_session(SessionRecord(name="s1", pipeline=Pipeline("p", stages), root="/tmp/r"), items=10)
    return engine


def server_ms(r) -> int:
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def claim(link):
    for _ in range(5):
        result = link.step()
        if result.claimed:
            return result.claimed
    raise AssertionError("nothing claimed")


def stored(r, item: str) -> dict:
    return json.loads(r.hget(K.outcomes("s1"), item))


def check(r, item: str, state: str, window: tuple[int, int], *, worker: str, attempts: int) -> OutcomeRecord:
    raw = stored(r, item)
    assert set(raw) == FIELDS, raw
    assert isinstance(raw["at"], int) and window[0] <= raw["at"] <= window[1], (raw["at"], window)
    record = OutcomeRecord.decode(item, r.hget(K.outcomes("s1"), item))
    assert (record.state, record.worker, record.attempts) == (OutcomeKind(state), worker, attempts), record
    assert json.loads(record.task)["i"] == item  # the message it had, whole, to retry it
    return record


@pytest.fixture
def skewed_client_clock(monkeypatch):
    """This process's clock a day ahead: nothing may take a record's time from it."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + DAY_S)


def test_a_workers_reports_write_the_one_record(session, r, skewed_client_clock):
    session.enqueue("s1", "a", [("i1", None), ("i2", None), ("i3", None)])
    link = session.worker_link("w1", ["a"])
    before = server_ms(r)
    for kind, error in ((OutcomeKind.FAILED, "RuntimeError: boom"), (OutcomeKind.TIMED_OUT, "timed out after 1s"),
                        (OutcomeKind.CANCELLED, "session cancelled")):
        link.step(Finish(claim(link), Outcome(kind, error=error, stderr="x" * 9000), attempts=1), claim=False)
    window = (before, server_ms(r))
    for item, state in (("i1", "failed"), ("i2", "timed_out"), ("i3", "cancelled")):
        record = check(r, item, state, window, worker="w1", attempts=1)
        assert record.stage == "a" and len(record.stderr) == 4000  # the tail, bounded
    assert OutcomeRecord.decode("i1", r.hget(K.outcomes("s1"), "i1")).error == "RuntimeError: boom"


def test_reports_for_a_cancelled_session_write_the_one_record(session, r):
    session.enqueue("s1", "a", [("i1", None), ("i2", None), ("i3", None)])
    link = session.worker_link("w1", ["a"])
    held = ()
    for _ in range(5):
        held = held or link.step(want=3).batch
    assert len(held) == 3
    session.cancel("s1")
    before = server_ms(r)
    link.step(Finish(held[0], Outcome(OutcomeKind.DONE), next_stage="b"), claim=False)  # its next stage is cancelled
    link.step(Finish(held[1], Outcome(OutcomeKind.RETRY, delay_s=1), attempts=1), claim=False)
    link.step(Finish(held[2], Outcome(OutcomeKind.HANDBACK), attempts=1), claim=False)
    window = (before, server_ms(r))
    assert check(r, "i1", "cancelled", window, worker="w1", attempts=0).stage == "b"
    for item in ("i2", "i3"):
        assert check(r, item, "cancelled", window, worker="w1", attempts=1).error == "session cancelled"


def test_the_operators_cancel_writes_the_one_record(session, r):
    session.enqueue("s1", "a", [("i1", None)])
    before = server_ms(r)
    session.cancel("s1")
    record = check(r, "i1", "cancelled", (before, server_ms(r)), worker="", attempts=0)
    assert record.error == "session cancelled"


def test_the_reaper_writes_the_one_record(session, r, skewed_client_clock):
    session.enqueue("s1", "a", [("i1", None), ("i2", None)])
    link = session.worker_link("dead", ["a"])
    claim(link)
    before = server_ms(r)
    assert session.reclaim_worker("dead", force=True).failed == 1  # max_attempts 1: its last attempt
    record = check(r, "i1", "failed", (before, server_ms(r)), worker="dead", attempts=1)
    assert "worker dead was lost during attempt 1 of 1" in record.error
    # a reclaim for a cancelled session records it cancelled, the same way
    link = session.worker_link("dead2", ["a"])
    claim(link)
    from symphony.engine.registry import set_session_state

    set_session_state(r, session.keys, "s1", SessionState.CANCELLED)
    before = server_ms(r)
    assert session.reclaim_worker("dead2", force=True).cancelled == 1
    check(r, "i2", "cancelled", (before, server_ms(r)), worker="dead2", attempts=1)


def test_records_round_trip_and_old_second_timestamps_are_read_as_such():
    record = OutcomeRecord(item="i1", state=OutcomeKind.TIMED_OUT, stage="a", error="e", stderr="s", attempts=2,
                           worker="w", at_ms=1_795_281_158_841, task='{"i":"i1","s":"s1","t":"a","a":1}')
    assert set(json.loads(record.encode())) == FIELDS
    assert OutcomeRecord.decode("i1", record.encode()) == record
    assert record.at == 1_795_281_158.841
    old = OutcomeRecord.decode("i1", '{"state":"failed","stage":"a","error":"x","at":1795281158.5}')
    assert old.at_ms == 1_795_281_158_500 and old.worker == "" and old.task == ""
    for bad in ("not json", "[1]", '{"state":"exploded"}'):
        with pytest.raises(InvalidRecord):
            OutcomeRecord.decode("i1", bad)


def test_failures_and_retry_read_records_through_the_one_parser(session, r):
    session.enqueue("s1", "a", [("i1", None, 3)])
    link = session.worker_link("w1", ["a"])
    link.step(Finish(claim(link), Outcome(OutcomeKind.FAILED, error="boom"), attempts=1), claim=False)
    r.hset(K.outcomes("s1"), "junk", "not a record")  # skipped, not fatal
    (failure,) = session.failures("s1")
    assert (failure.item, failure.state, failure.error) == ("i1", OutcomeKind.FAILED, "boom")
    assert failure.at is not None and abs(failure.at - time.time()) < DAY_S
    assert session.retry("s1").requeued == 1
    assert json.loads(r.lindex(K.queue("a", "s1"), 0))["o"] == 3  # the ordinal travels back with the retry
