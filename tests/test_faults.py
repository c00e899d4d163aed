"""Engine-level faults against a real Redis: lost replies, outages, and who may judge a lease.

Each test reproduces one way an outage used to lose or steal work, with the real mechanism
(a reply lost to a socket timeout, Redis not answering for a while), not a mock.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from symphony.engine import Engine, Finish, Outcome, OutcomeKind, resolve_redis
from symphony.engine.scripts import load_all
from tests.helpers import wait_until, held
from tests.test_engine_queue import claim, make_record
from tests.redis_cluster import pause_every_primary


@pytest.fixture
def session(engine):
    record = make_record()
    engine.register_session(record, items=3)
    return record


def outage(r: redis.Redis, seconds: float) -> None:
    """Redis answers nobody for ``seconds`` (every client's commands wait, as when it is paused)."""
    pause_every_primary(r, int(seconds * 1000))


@pytest.mark.parametrize("want", [1, 3])
def test_a_claim_whose_reply_was_lost_is_delivered_again_not_orphaned(own_redis, want):
    """The claim ran on the server but its reply never reached the worker (Redis was paused with
    SIGSTOP and the worker's socket timed out). Before the fix the worker, knowing nothing of
    those tasks, claimed the next ones: the first stayed in its in-flight list for as long as the
    worker lived, never run and never reclaimed (its lease was alive): silently stuck jobs. With
    prefetch (``want`` > 1) a whole batch could be stuck that way."""
    admin = Engine(resolve_redis(own_redis.url))
    impatient = Engine(resolve_redis(own_redis.url), socket_timeout=0.3)
    r = own_redis.client()
    items = [f"i{n}" for n in range(1, 2 * want + 2)]
    try:
        load_all(admin.client)
        admin.register_session(make_record(), items=len(items))
        admin.enqueue("s1", "a", [(i, None) for i in items])
        link = impatient.worker_link("w1", ["a"])
        link.beat(5, 12.5, {})
        link.step()  # learns which queue has work (a hint); claims nothing yet
        assert link.hint is not None
        own_redis.pause()
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                link.step(want=want)  # the claim is sent; its reply is lost to the timeout
        finally:
            own_redis.resume()
        wait_until(lambda: len(held(r, "w1")) == want, message="the claim to run once Redis resumed")
        again = link.step(want=want)
        assert [c.task.item for c in again.batch] == items[:want], "the orphaned tasks must be delivered again"
        assert held(r, "w1") == [c.raw for c in again.batch]
        assert r.hget(K.stats("s1"), "a|running") == str(want)  # counted once, not twice
        link.step([Finish(c, Outcome(OutcomeKind.DONE), next_stage="b", attempts=1) for c in again.batch], claim=False)
        assert len(held(r, "w1")) == 0 and r.hget(K.stats("s1"), "a|running") == "0"
        assert [c.task.item for c in link.step(want=want).batch] == items[want:2 * want]  # and on it goes
    finally:
        impatient.close()
        admin.close()
        r.close()


@pytest.mark.slow
def test_a_short_outage_does_not_steal_a_live_lease(engine, r, session):
    """Redis unavailable for 1.75 heartbeats: long enough for a live worker's lease (2.5
    heartbeats, renewed up to one heartbeat before the outage) to run out, too short for the
    old rule (nobody beat for more than two heartbeats) to call it an outage."""
    hb, lease = 2.0, 5.0
    engine.enqueue("s1", "a", [("i1", None)])
    x = engine.worker_link("x", ["a"])
    w = engine.worker_link("w", ["a"])
    x.beat(hb, lease, {})
    claimed = claim(x)
    time.sleep(1.8)  # x's next beat is due 0.2 s after w's, which is the last one before the outage
    w.beat(hb, lease, {})
    outage(r, 3.5)  # nobody is heard for 3.5 s (< 2 heartbeats); x's lease runs out during it
    beat = w.beat(hb, lease, {})  # the first script to run after the outage
    assert "x" not in beat.lapsed, "a live worker's lease was stolen because Redis was unavailable"
    assert beat.grace_ms > 0
    assert engine.reap(["x"])[0].skipped == "grace"
    assert held(r, "x") == [claimed.raw]
    assert x.beat(hb, lease, {}).known  # x beats again: its lease and its task are still its own


@pytest.mark.slow
def test_a_reaper_that_runs_first_after_an_outage_does_not_steal(engine, r, session):
    """After an outage, the first script to reach Redis may be a reaper (the console, or a
    worker's scheduled check), not a heartbeat. Before the fix only heartbeats looked for an
    outage, so that reaper took every lease that ran out while Redis was unavailable."""
    hb, lease = 0.5, 1.25
    engine.enqueue("s1", "a", [("i1", None)])
    x = engine.worker_link("x", ["a"])
    x.beat(hb, lease, {})
    claimed = claim(x)
    outage(r, 1.5)  # longer than x's whole lease
    assert engine.reap() == [], "the reaper judged leases that ran out while Redis was unavailable"
    assert held(r, "x") == [claimed.raw]
    beat = x.beat(hb, lease, {})
    assert beat.known and beat.grace_ms > 0


@pytest.mark.slow
def test_a_worker_that_really_died_is_still_reaped_after_the_grace_window(engine, r, session):
    """The grace window delays reclaim; it never prevents it."""
    hb, lease = 0.2, 0.5
    engine.enqueue("s1", "a", [("i1", None)])
    dead = engine.worker_link("dead", ["a"])
    live = engine.worker_link("live", ["a"])
    dead.beat(hb, lease, {})
    claim(dead)
    live.beat(hb, lease, {})
    outage(r, 0.8)
    beat = live.beat(hb, lease, {})
    assert beat.grace_ms > 0 and beat.lapsed == ()

    def reaped():
        found = live.beat(hb, lease, {})
        return "dead" in found.lapsed and engine.reap(found.lapsed)

    wait_until(reaped, timeout=10, interval=hb, message="the dead worker to be reaped after the grace window")
    assert r.llen(K.queue("a", "s1")) == 1 and len(held(r, "dead")) == 0


def test_the_console_alone_reaps_a_dead_fleet(engine, r, session):
    """Nobody beats any more (the whole fleet died) but Redis is up: a process that only reaps
    (the console) still reclaims the tasks once the leases ran out, without an endless grace."""
    engine.enqueue("s1", "a", [("i1", None)])
    dead = engine.worker_link("dead", ["a"])
    dead.beat(0.1, 0.3, {})
    claim(dead)
    wait_until(lambda: engine.reap(), timeout=10, interval=0.05, message="the console to reap the dead fleet")
    assert r.llen(K.queue("a", "s1")) == 1 and len(held(r, "dead")) == 0


def test_a_burst_worker_does_not_exit_before_it_knows_its_roles(engine, r, redis_url, tmp_path):
    """The heartbeat thread may follow the registry's epoch before the loop has loaded its roles;
    the loop used to take that as "roles loaded", step with no roles, find no work for no roles,
    and exit 0 in burst mode with the session untouched (seen in the AUTH tests). Now only the
    loop loads its roles; the heart merely says they are stale."""
    from symphony.engine import initialize_session, load_session
    from tests.helpers import write_pipeline, write_session
    from symphony.workers.options import WorkerOptions
    from symphony.workers.process import WorkerProcess

    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "p", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json"}])
    initialize_session(engine, load_session(write_session(tmp_path / "s.yaml", "s1", "pipe.yaml", ["i1"],
                                                          root=str(tmp_path / "data"))))
    worker = WorkerProcess(WorkerOptions(redis=resolve_redis(redis_url), burst=True, idle_wait_s=0.2), "w-burst")
    worker.heart.beat()  # what the heartbeat thread does first, racing the main loop
    try:
        assert worker.loop.run() == 0
    finally:
        worker.executor.close()
        worker.engine.close()
    assert (tmp_path / "data" / "s1" / "work" / "i1.json").is_file(), "the burst worker exited without working"


@pytest.mark.slow
def test_a_worker_notices_that_redis_lost_its_registry_even_if_the_epoch_looks_the_same(engine, r, redis_url,
                                                                                       tmp_path):
    """After FLUSHALL the registry's epoch starts again at 1: a worker that saw epoch 1 before
    and sees 1 again after (a new session registered within one heartbeat) kept its old roles
    and never served the new session's stage. Losing its own lease registration (known=False)
    now makes it read the registry again."""
    from symphony.engine import initialize_session, load_session
    from tests.helpers import WorkerRun, write_pipeline, write_session

    def session(name: str, stage: str):
        write_pipeline(tmp_path / f"{name}-pipe.yaml", [{"name": stage, "pool": "p", "handler": "tests.handlers:ok",
                                                        "output": "{root}/{session}/{stage}/{item}.json"}])
        return load_session(write_session(tmp_path / f"{name}.yaml", name, f"{name}-pipe.yaml", ["i1"],
                                          root=str(tmp_path / "data")))

    initialize_session(engine, session("before", "old"))
    worker = WorkerRun(redis_url, "--pool", "p", "--processes", "1", log_dir=tmp_path, heartbeat=3.0)
    try:
        wait_until(lambda: (tmp_path / "data" / "before" / "old" / "i1.json").is_file(), message="the first session")
        epoch = r.get(K.epoch)
        r.flushall()  # Redis loses everything...
        initialize_session(engine, session("after", "new"))  # ...and a new session arrives within one heartbeat
        assert r.get(K.epoch) == epoch
        wait_until(lambda: (tmp_path / "data" / "after" / "new" / "i1.json").is_file(), timeout=15,
                   message="the worker to serve the new session's stage")
    finally:
        worker.stop()


def test_a_lost_report_tells_recorded_reclaimed_and_redis_lost_its_data(engine, r, redis_url, session):
    """A report that finds its task gone (finish.lua says 'lost'): its first attempt was recorded
    and only the reply was lost; or its lease was reclaimed meanwhile; or Redis lost its data.
    The worker logged "already recorded" for a resent report whatever happened, and "reclaimed by
    another process (our lease lapsed)" when nothing had been reclaimed."""
    engine.enqueue("s1", "a", [("i1", None), ("i2", None), ("i3", None)])
    link = engine.worker_link("w1", ["a"])
    link.beat(5, 12.5, {})
    first = claim(link)
    recorded = Finish(first, Outcome(OutcomeKind.DONE), next_stage="b", attempts=1)
    link.step(recorded, claim=False)  # recorded; imagine its reply lost
    assert link.step(recorded, claim=False).finished == "lost"  # the resend
    assert engine.why_lost("w1", recorded, resent=True).kind == "recorded"
    second = claim(link)
    engine.reclaim_worker("w1", force=True, reason="its lease lapsed")  # taken while the worker was cut off
    stolen = Finish(second, Outcome(OutcomeKind.DONE), next_stage="b", attempts=1)
    assert link.step(stolen, claim=False).finished == "lost"
    why = engine.why_lost("w1", stolen, resent=True)
    assert why.kind == "reclaimed" and "its lease lapsed" in why.detail
    link.beat(5, 12.5, {})
    third = claim(link)
    r.flushall()  # Redis loses everything while the task runs
    gone = Finish(third, Outcome(OutcomeKind.DONE), next_stage="b", attempts=1)
    assert link.step(gone, claim=False).finished == "lost"
    assert engine.why_lost("w1", gone, resent=True).kind == "gone"
    assert engine.why_lost("w1", gone, resent=False).kind == "gone"


@pytest.mark.slow
def test_a_worker_whose_redis_lost_its_data_does_not_say_its_task_was_reclaimed(engine, r, redis_url, tmp_path):
    from symphony.engine import initialize_session, load_session
    from tests.helpers import WorkerRun, write_pipeline, write_session

    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "p", "handler": "tests.handlers:hang",
                                             "params": {"hang": 1.5}, "output": "{root}/{session}/{stage}/{item}.json"}])
    initialize_session(engine, load_session(write_session(tmp_path / "s.yaml", "s1", "pipe.yaml", ["i1"],
                                                          root=str(tmp_path / "data"))))
    worker = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path, heartbeat=0.5)
    try:
        markers = tmp_path / "data" / "markers"
        wait_until(lambda: markers.is_dir() and list(markers.glob("started-*")), message="the task to start")
        r.flushall()
        wait_until(lambda: "work:i1@s1 was no longer in this worker's hands" in worker.output(), timeout=30,
                   message="the worker to say what happened to its report")
        log = worker.output()
        assert "reclaimed by another process" not in log and "reclaimed from this worker" not in log, log
        assert "already recorded" not in log, log
    finally:
        worker.stop()


def _stops_within(process: subprocess.Popen, seconds: float) -> float | None:
    started = time.monotonic()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - started


def test_a_supervisor_waiting_for_redis_stops_on_sigterm(tmp_path):
    """Started while Redis is down, the supervisor waits on its stop Event; SIGTERM's handler set
    that same multiprocessing Event from the interrupted thread, and multiprocessing's notify
    waits for the sleeper to wake, which is that thread: a deadlock, the process never stopped."""
    from symphony.engine.embedded import free_port
    from tests.helpers import ROOT, worker_env

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    log = tmp_path / "sup.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "symphony.workers", "--processes", "1"], cwd=ROOT, env=worker_env(url),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "waiting for it" in log.read_text(), message="the supervisor to wait for Redis")
        proc.send_signal(signal.SIGTERM)
        assert _stops_within(proc, 10) is not None, "the supervisor did not stop on SIGTERM"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
def test_idle_workers_stop_when_the_whole_group_gets_sigterm(engine, redis_url, tmp_path):
    """systemd and container runtimes send SIGTERM to every process: a worker with nothing to
    serve waits on the same stop Event, and its own handler deadlocked the same way (its
    supervisor had to kill it after the drain timeout)."""
    from tests.helpers import WorkerRun

    worker = WorkerRun(redis_url, "--pool", "nobody-serves-this", "--processes", "2", "--drain-timeout", "20",
                       log_dir=tmp_path)
    try:
        wait_until(lambda: engine.client.zcard(K.workers) == 2, message="both worker processes to beat")
        os.killpg(worker.process.pid, signal.SIGTERM)
        took = _stops_within(worker.process, 15)
        assert took is not None and took < 10, f"stopping took {took}; log:\n{worker.output()[-2000:]}"
        assert "did not stop in time" not in worker.output()
    finally:
        worker.stop()
