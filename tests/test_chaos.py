"""Chaos and fault tests: a 3-stage pipeline on a private Redis while workers are killed, Redis
restarts or freezes, connections drop and poison sits in the queues. Small here (every test
run); ``bench/chaos.py`` runs the same scenarios at any size, and these sizes can be raised
with ``SYMPHONY_CHAOS_ITEMS``, ``SYMPHONY_CHAOS_PROCESSES`` and ``SYMPHONY_CHAOS_SECONDS``.
The figures are printed (``[chaos] ...``) and recorded in docs/reliability.md.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import chaos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ITEMS = chaos.env_int("SYMPHONY_CHAOS_ITEMS", 0)
PROCESSES = chaos.env_int("SYMPHONY_CHAOS_PROCESSES", 3)
SECONDS = chaos.env_float("SYMPHONY_CHAOS_SECONDS", 8.0)


def every_item_done_once(figures: chaos.Figures) -> bool:
    return all(n == figures.items for n in figures.details["done"].values())


def report(capsys, figures: chaos.Figures) -> None:
    with capsys.disabled():
        print("\n" + figures.line())
    path = os.environ.get("SYMPHONY_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(figures.to_dict()) + "\n")


def test_worker_kills_lose_nothing_and_every_duplicate_traces_to_a_kill(tmp_path, capsys):
    figures = chaos.worker_kills(tmp_path, items=ITEMS or 150, processes=PROCESSES, duration=SECONDS,
                                 interval=max(0.5, SECONDS / 8))
    report(capsys, figures)
    assert figures.faults >= 4, "the driver should have killed several worker processes"
    assert figures.lost == 0
    assert figures.untraced == 0, "a task ran twice without a kill to explain it"
    assert figures.double_completions == 0 and figures.failed == 0
    assert every_item_done_once(figures), figures.details["done"]
    assert figures.duplicates <= figures.faults  # at most one re-run per kill
    # every kill was of a registered process, so each one must show as reclaimed by its supervisor
    # (how fast is a figure, measured by bench/chaos.py, not asserted here)
    assert figures.details["kills_reclaimed"] == figures.faults, figures.notes


def test_redis_restart_with_aof_loses_nothing_and_workers_reconnect(tmp_path, capsys):
    figures = chaos.redis_restart(tmp_path, items=ITEMS or 120, processes=PROCESSES)
    report(capsys, figures)
    assert figures.lost == 0 and figures.failed == 0 and figures.double_completions == 0
    assert figures.duplicates == 0, "nothing may run twice: no worker died"
    assert every_item_done_once(figures), figures.details["done"]
    assert figures.worker_restarts == 0, "workers must reconnect on their own, not be restarted"
    assert figures.reclaimed == 0, "no lease may be taken because Redis was down"


def test_network_trouble_no_crash_loop_no_stolen_lease(tmp_path, capsys):
    figures = chaos.network_trouble(tmp_path, items=ITEMS or 90, processes=PROCESSES)
    report(capsys, figures)
    assert figures.lost == 0 and figures.failed == 0 and figures.double_completions == 0
    assert figures.duplicates == 0 and figures.reclaimed == 0, "a live worker's lease was stolen"
    assert every_item_done_once(figures), figures.details["done"]
    assert figures.worker_restarts == 0, "a worker process crashed"
    assert "worker_lost events 0" in figures.notes[-1]


def test_poison_ends_failed_or_timed_out_with_a_reason_and_the_rest_flows(tmp_path, capsys):
    figures = chaos.poison(tmp_path, items=ITEMS or 40, processes=2)
    report(capsys, figures)
    outcomes = figures.details["outcomes"]
    assert figures.lost == 0, "every ordinary item must complete"
    crash = outcomes["crash-1"]
    assert crash["state"] == "failed" and crash["attempts"] == 2 and "always crashes" in crash["error"]
    assert outcomes["hang-1"]["state"] == "timed_out" and "timed out after 1.5s" in outcomes["hang-1"]["error"]
    # planted messages are no items: each is set aside once in the dead-letter list, with its reason
    assert set(outcomes) == {"crash-1", "hang-1"}, outcomes
    planted = figures.details["deadletter"]
    assert len(planted) == len(chaos.PLANTED), planted
    reasons = " | ".join(e["reason"] for e in planted)
    assert "not valid JSON" in reasons and "nested too deeply" in reasons and "not valid UTF-8" in reasons, reasons
    assert "has no live entry in session chaos" in reasons and "found in queue s1:chaos" in reasons, reasons
    assert figures.details["tracebacks"] == 0, "a planted message made a worker log a traceback"
    # the hostile ids never became paths: nothing was written outside the data root
    root = Path(figures.details["root"])
    assert not (root.parent / "etc").exists() and not list(root.rglob("*passwd*"))
    assert not list(root.rglob("*injected*"))


@pytest.mark.parametrize("mode", ["flushall", "restart"])
def test_redis_loses_everything_and_repair_restores_every_missing_task(tmp_path, capsys, mode):
    figures = chaos.redis_flush(tmp_path, items=ITEMS or 120, processes=PROCESSES, mode=mode)
    report(capsys, figures)
    plan = figures.details["plan"]
    assert plan["to_enqueue"] > 0 and not plan["registered"], "Redis had forgotten the session"
    assert figures.lost == 0 and figures.failed == 0 and figures.double_completions == 0
    assert figures.untraced == 0, "a task ran twice although it was not running when Redis lost it"
    assert figures.duplicates <= PROCESSES, "at most the tasks in flight at the loss run again"
    # the counters were lost with everything else: repair restored what the disk proves, and
    # each item is done once per stage, whatever ran again
    assert every_item_done_once(figures), figures.details["done"]


def test_hostile_handlers_fail_their_own_task_and_never_starve_the_lease(tmp_path, capsys):
    figures = chaos.hostile_handlers(tmp_path, items=ITEMS or 40, processes=2)
    report(capsys, figures)
    outcomes, runs = figures.details["outcomes"], figures.details["runs"]
    assert figures.lost == 0 and figures.double_completions == 0
    assert figures.reclaimed == 0 and figures.duplicates == 0, "a lease lapsed: the task ran twice"
    assert figures.worker_restarts == 0, "a handler took its worker process down"
    gil = outcomes["gil-1"]
    assert gil["state"] == "timed_out" and "timed out after 2s" in gil["error"] and runs["gil-1"] == 1
    assert outcomes["exit-1"]["state"] == "failed" and "SystemExit" in outcomes["exit-1"]["error"]
    assert outcomes["interrupt-1"]["state"] == "failed" and "KeyboardInterrupt" in outcomes["interrupt-1"]["error"]
    assert outcomes["die-1"]["state"] == "failed" and "exited with code 7" in outcomes["die-1"]["error"]
    assert all(outcomes[k]["attempts"] == 2 for k in ("exit-1", "interrupt-1", "die-1"))
    assert set(outcomes) == {"gil-1", "exit-1", "interrupt-1", "die-1"}


def test_a_broken_host_is_set_aside_and_no_item_fails(tmp_path, capsys):
    figures = chaos.broken_host(tmp_path, items=ITEMS or 120, processes=2, broken_processes=2)
    report(capsys, figures)
    assert figures.lost == 0 and figures.failed == 0 and figures.double_completions == 0, figures.notes
    assert every_item_done_once(figures), figures.details["done"]
    assert figures.details["quarantines"] >= 1
    # before it was set aside it burned at most a batch per process, never every attempt of every item
    assert figures.details["charged"] <= 2 * 32 + 5, figures.notes


@pytest.mark.parametrize("policy", [
    pytest.param("allkeys-random", marks=pytest.mark.xfail(strict=False, reason=(
        "known gap: now and then (1 of 12 runs on main, under a full CI run), after allkeys-random eviction in the hash-slot key layout, repair "
        "finds nothing to do yet some items are never run (docs/reliability.md); the message lists the evicted keys"))),
    "volatile-random"])
def test_eviction_is_refused_and_when_accepted_repair_restores_every_item(tmp_path, capsys, policy):
    figures = chaos.eviction(tmp_path, items=ITEMS or 120, processes=PROCESSES, policy=policy)
    report(capsys, figures)
    assert figures.details["refused_exit"] == 3 and len(figures.details["refusal"]) == 1
    assert "noeviction" in figures.details["refusal"][0]
    assert len(figures.details["evicted"]) >= 3, "Redis should have evicted some of Symphony's keys"
    assert figures.lost == 0 and figures.untraced == 0
    assert every_item_done_once(figures), figures.details["done"]
    last = figures.details["plans"][-1]
    assert last["to_enqueue"] == 0 and last["lost"] == 0 and last["relisted"] == 0


def test_out_of_memory_loses_nothing_and_is_said_once(tmp_path, capsys):
    figures = chaos.out_of_memory(tmp_path, items=ITEMS or 120, processes=PROCESSES)
    report(capsys, figures)
    assert figures.lost == 0 and figures.duplicates == 0 and figures.double_completions == 0
    assert figures.reclaimed == 0 and figures.worker_restarts == 0 and figures.failed == 0
    assert every_item_done_once(figures), figures.details["done"]
    assert figures.details["status_exit"] == 3
    assert 1 <= figures.details["said"] <= PROCESSES and figures.details["tracebacks"] == 0
    assert figures.details["flaps"] == 0
