"""Steering in the claim, step by step against a real Redis: pause, priority, max_running, rate."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json

import pytest

from symphony.engine import Finish, Outcome, OutcomeKind, SymphonyError
from tests.test_engine_queue import make_record


def register(engine, name, items=10, stage="a"):
    engine.register_session(make_record(name, stages=(stage,)), items=items)
    engine.enqueue(name, stage, [(f"{name}-{n}", None, n) for n in range(items)])


def claims(link, n, want=1):
    """Up to ``n`` steps until one claims (a worker claims only when it holds nothing): its tasks."""
    for _ in range(n):
        result = link.step(want=want)
        if result.batch:
            return list(result.batch)
    return []


def test_a_paused_session_is_claimed_by_nobody_and_resume_keeps_its_order(engine, r):
    register(engine, "s1", 5)
    link = engine.worker_link("w1", ["a"])
    first = claims(link, 3)[0]
    engine.pause("s1")
    assert r.zscore(K.ready("a"), "s1") is None
    link.step(Finish(first, Outcome(OutcomeKind.DONE)))  # a task in flight still finishes
    assert claims(link, 5) == []
    assert r.hget(K.stats("s1"), "a|completed") == "1"
    assert engine.steering("s1").paused
    engine.resume("s1")
    rest = claims(link, 3)
    assert [c.item for c in rest] == ["s1-1"]  # queue order kept
    kinds = [f["kind"] for _, f in r.xrange(K.events)]
    assert "pause" in kinds and "resume" in kinds


def test_a_paused_stage_stops_only_that_stage(engine, r):
    engine.register_session(make_record("s1", stages=("a", "b")), items=2)
    engine.enqueue("s1", "a", [("i1", None, 0), ("i2", None, 1)])
    link = engine.worker_link("w1", ["a", "b"])
    c = claims(link, 2)[0]
    engine.pause("s1", "b")
    link.step(Finish(c, Outcome(OutcomeKind.DONE), next_stage="b"))
    got = claims(link, 6)
    assert [x.role for x in got] == ["a"]  # b's task waits, a's goes on
    link.step(Finish(got[0], Outcome(OutcomeKind.DONE), next_stage="b"), claim=False)
    assert claims(link, 4) == []
    with pytest.raises(SymphonyError, match="no stage"):
        engine.pause("s1", "zz")
    engine.resume("s1", "b")
    assert [x.role for x in claims(link, 3)] == ["b"]
    assert r.llen(K.queue("b", "s1")) == 1


def test_max_running_caps_claims_fleet_wide_and_is_released_by_finish_and_reclaim(engine, r):
    register(engine, "s1", 10)
    register(engine, "s2", 10)
    engine.set_stage_limits("a", max_running=3)
    links = [engine.worker_link(f"w{n}", ["a"]) for n in range(4)]
    held = {}
    for link in links:
        held[link.worker_id] = claims(link, 3, want=2)
    assert sum(len(v) for v in held.values()) == 3
    assert engine.stage_control(["a"])[0].running == 3
    # finish releases one slot
    busy = next(link for link in links if held[link.worker_id])
    task = held[busy.worker_id][0]
    busy.step(Finish(task, Outcome(OutcomeKind.DONE)), claim=False)
    assert engine.stage_control(["a"])[0].running == 2
    # a forced reclaim (a dead worker) releases its slots too
    other = next(link for link in links if link is not busy and held[link.worker_id])
    engine.reclaim_worker(other.worker_id, force=True, reason="test")
    assert engine.stage_control(["a"])[0].running == 2 - len(held[other.worker_id])
    # the session's own cap
    engine.set_stage_limits("a", max_running=None)
    engine.set_session_limit("s2", "a", 1)
    solo = engine.worker_link("solo", ["a"])
    got = [c for c in claims(solo, 10, want=4) if c.session == "s2"]
    s2_running = int(r.hget(K.stats("s2"), "a|running") or 0)
    assert s2_running <= 1 + sum(1 for v in held.values() for c in v if c.session == "s2")
    assert len(got) <= 1 or s2_running <= 1


def test_a_higher_priority_session_goes_first_and_a_lower_one_runs_when_it_has_nothing(engine, r):
    register(engine, "lo", 5)
    register(engine, "hi", 5)
    engine.set_priority("hi", 10)
    link = engine.worker_link("w1", ["a"])
    order = []
    for _ in range(12):
        result = link.step()
        for c in result.batch:
            order.append(c.session)
            link.step(Finish(c, Outcome(OutcomeKind.DONE)), claim=False)
    assert order[:5] == ["hi"] * 5 and order[5:10] == ["lo"] * 5
    with pytest.raises(SymphonyError, match="priority"):
        engine.set_priority("hi", 1001)


def test_a_rate_limit_hands_out_tokens_on_the_server_clock(engine, r):
    register(engine, "s1", 50)
    engine.set_stage_limits("a", rate="2/min")
    link = engine.worker_link("w1", ["a"])
    got = claims(link, 10, want=5)
    assert len(got) == 1  # a burst of one second's worth, at least one; no more this minute
    link.step(Finish(got[0], Outcome(OutcomeKind.DONE)), claim=False)
    link.step()
    result = link.step()
    assert not result.batch and not result.eligible  # the queue is eligible again when a token is due
    state = engine.stage_control(["a"])[0]
    assert state.rate == "2/min" and not state.max_running
    with pytest.raises(SymphonyError, match="rate"):
        engine.set_stage_limits("a", rate="lots")


def test_the_status_carries_steering(engine, r):
    register(engine, "s1", 3)
    engine.pause("s1")
    engine.set_priority("s1", 7)
    engine.set_stage_limits("a", max_running=4, rate="120/min")
    snap = json.loads(engine.snapshot().to_json())
    (session,) = snap["sessions"]
    assert session["paused"] and session["priority"] == 7
    (queue,) = snap["queues"]
    assert queue["paused"] and queue["priority"] == 7 and queue["max_running"] == 4 and queue["rate"] == "120/min"
    assert snap["stages"] == [{"stage": "a", "running": 0, "max_running": 4, "rate": "120/min",
                               "max_running_set_live": True, "rate_set_live": True}]


def test_the_spec_files_declare_limits_rates_and_priority_with_file_line_field_errors(tmp_path):
    from symphony.engine import SpecError, load_session
    from tests.helpers import write_pipeline, write_session

    stage = {"name": "work", "handler": "tests.handlers:ok", "output": "{root}/{session}/{stage}/{item}.json"}
    write_pipeline(tmp_path / "pipe.yaml", [{**stage, "max_running": 8, "rate": "120/min"}])
    good = load_session(write_session(tmp_path / "s.yaml", "s", "pipe.yaml", ["a"], priority=10,
                                      max_running={"work": 2}))
    assert good.pipeline.stages[0].max_running == 8 and good.pipeline.stages[0].rate == "120/min"
    assert good.priority == 10 and dict(good.max_running) == {"work": 2}
    # steering is not the definition: changing it never conflicts with what is registered
    write_pipeline(tmp_path / "pipe.yaml", [{**stage, "max_running": 3}])
    assert load_session(tmp_path / "s.yaml").record().fingerprint() == good.record().fingerprint()

    write_pipeline(tmp_path / "bad.yaml", [{**stage, "max_running": -1, "rate": "lots"}])
    with pytest.raises(SpecError) as caught:
        load_session(write_session(tmp_path / "b.yaml", "b", "bad.yaml", ["a"]))
    text = str(caught.value)
    assert "bad.yaml" in text and "stages[0].max_running" in text and "stages[0].rate" in text
    assert ":5" in text or ":6" in text or ":4" in text  # a line number
    with pytest.raises(SpecError) as caught:
        load_session(write_session(tmp_path / "c.yaml", "c", "pipe.yaml", ["a"], priority=2000,
                                   max_running={"nope": 1}))
    text = str(caught.value)
    assert "c.yaml" in text and "priority" in text and "max_running.nope" in text


def test_the_verbs_pause_resume_priority_and_limit(engine, r, cli):
    register(engine, "s1", 3)
    code, out, err = cli("pause", "s1", "--stage", "a", "--json")
    assert code == 0 and json.loads(out)["paused_stages"] == ["a"], out + err
    assert cli("resume", "s1")[0] == 0 and not engine.steering("s1").paused_stages
    code, out, _ = cli("priority", "s1", "7")
    assert code == 0 and "priority 7" in out
    code, out, _ = cli("limit", "a", "5", "--rate", "10/s", "--json")
    assert code == 0 and json.loads(out) == {"stage": "a", "running": 0, "max_running": 5, "rate": "10/s",
                                             "max_running_set_live": True, "rate_set_live": True}
    code, out, _ = cli("limit", "a", "none", "--rate", "none")
    assert code == 0 and "no limit" in out and "no rate limit" in out
    code, out, _ = cli("limit", "a", "2", "--session", "s1")
    assert code == 0 and engine.steering("s1").max_running == {"a": 2}
    code, _, err = cli("priority", "s1", "5000")
    assert code == 2 and "priority" in err
    code, _, err = cli("pause", "nope")
    assert code == 2 and "nope" in err
    code, out, _ = cli("status")
    assert "prio 7" in out


def test_a_full_stage_keeps_its_queues_in_priority_order(engine, r):
    register(engine, "lo", 6)
    register(engine, "hi", 6)
    engine.set_priority("hi", 10)
    engine.set_stage_limits("a", max_running=1)
    w1, w2 = engine.worker_link("w1", ["a"]), engine.worker_link("w2", ["a"])
    order = []
    holder, other = w1, w2
    task = claims(holder, 3)[0]
    for _ in range(8):
        assert claims(other, 2) == []  # the stage is full: nothing for the other worker
        result = other.step()
        assert not result.batch and not result.eligible  # the hint waits for the stage to open
        holder.step(Finish(task, Outcome(OutcomeKind.DONE)), claim=False)
        order.append(task.session)
        task = claims(other, 3)[0]
        holder, other = other, holder
    # every task of the high-priority session within the first seven (the very first claim may go
    # to the older queue, before the priority has placed the other one)
    assert order[:7].count("hi") == 6, order


def test_the_console_cells_say_paused_priority_limits_and_draining():
    from dataclasses import replace

    from symphony.console.panels.queues import queue_cells
    from symphony.console.panels.sessions import _state_cell
    from symphony.console.panels.workers import worker_cells
    from symphony.engine import QueueStatus, SessionState
    from tests import console_fakes

    q = QueueStatus(role="detection", session="block7", queued=3, paused=True, priority=10, max_running=8,
                    stage_running=8, rate="120/min")
    cells = [getattr(c, "plain", None) or str(c) for c in queue_cells(q, None, SessionState.ACTIVE)]
    assert cells[0] == "detection:block7 (paused)"
    assert cells[-2:] == ["8/8", "120/min"]  # the stage's running/limit over the fleet, its rate
    s = replace(console_fakes.sessions(console_fakes.T0)[0], state=SessionState.ACTIVE, paused=True)
    assert _state_cell(s).plain == "paused"
    s = replace(s, paused=False, paused_stages=("detection",))
    assert _state_cell(s).plain == "paused: detection"
    w = replace(console_fakes.workers()[0], state="drained")
    assert "drained (idle)" in [getattr(c, "plain", "") for c in worker_cells(w)]


def test_a_prioritized_session_keeps_its_place_when_its_tasks_reach_the_next_stage(engine, r):
    engine.register_session(make_record("hi", stages=("a", "b")), items=2)
    engine.enqueue("hi", "a", [("i1", None, 0), ("i2", None, 1)])
    engine.set_priority("hi", 10)
    link = engine.worker_link("w1", ["a", "b"])
    task = claims(link, 3)[0]
    link.step(Finish(task, Outcome(OutcomeKind.DONE), next_stage="b"), claim=False)
    seconds, _ = r.time()
    assert float(r.zscore(K.ready("b"), "hi")) < (seconds - 5 * 86400) * 1e6  # shifted by its priority


def test_limit_without_a_number_shows_the_stage(engine, r, cli):
    register(engine, "s1", 2)
    engine.set_stage_limits("a", max_running=3)
    code, out, err = cli("limit", "a")
    assert code == 0 and "max_running 3" in out and "0 running" in out, out + err
    code, out, err = cli("limit", "a", "--rate", "5/s")
    assert code == 0 and "max_running 3" in out and "rate 5/s" in out, out + err
    engine.pause("s1", "a")
    assert "paused: a" in cli("sessions")[1]
