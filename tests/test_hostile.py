"""Hostile messages and hosts: what a planted or undecodable message does, and what a host whose
handlers all fail does, against a real Redis and real worker processes."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
from pathlib import Path

import pytest

from symphony.engine import Engine, load_session
from symphony.engine.initialize import initialize_session
from tests.helpers import WorkerRun, held, plant_inflight, wait_until, write_pipeline, write_session, dead_letters
from tests.redis_cluster import raw_client

DEEP = "[" * 100_000 + "]" * 100_000


def one_stage(tmp_path: Path, items, *, handler="tests.handlers:ok", name="s1", max_attempts=3, **stage_extra):
    stage = {"name": "work", "pool": "p", "handler": handler, "output": "{root}/{session}/{stage}/{item}.json",
             "max_attempts": max_attempts, "retry_backoff": 0.05, **stage_extra}
    write_pipeline(tmp_path / "pipe.yaml", [stage])
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", items, root=str(tmp_path / "data"))


def stats(r, session: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(K.stats(session)).items()}


def r_outcomes(server) -> dict:
    with server.client() as c:
        return c.hgetall(K.outcomes("sec"))


def deadletters(r) -> list[dict]:
    return dead_letters(r)


@pytest.mark.slow
def test_undecodable_and_planted_messages_go_to_the_dead_letter_list_once(engine, r, redis_url, tmp_path):
    """A 100,000-level nested array, a message with byte 0xff, and a valid-looking message for an
    item the session does not have, planted between real tasks: each goes to the dead-letter list
    once with its reason, nothing runs or is counted for them, every real item completes, and the
    worker logs no traceback."""
    items = [f"i{n}" for n in range(6)]
    initialize_session(engine, load_session(one_stage(tmp_path, items)))
    raw = Engine  # noqa: F841 - keep the import used

    binary = raw_client(redis_url)  # no decoding: plant raw bytes
    queue = K.queue("work", "s1")
    real = binary.lrange(queue, 0, -1)
    binary.delete(queue)
    planted = [DEEP.encode(), b'{"i":"i9\xff","s":"s1","t":"work","a":0}',
               b'{"i":"i2","s":"s1","t":"work","a":0,"m":{"bad":"\xff"}}',  # a real item: claimed, then refused
               b'{"i":"ghost","s":"s1","t":"work","a":0,"o":3}']
    binary.rpush(queue, real[0], *planted[:2], real[1], *planted[2:], *real[2:])
    worker = WorkerRun(redis_url, "--processes", "1", "--prefetch", "8", log_dir=tmp_path, heartbeat=0.5)
    try:
        wait_until(lambda: stats(r, "s1").get("work|completed", 0) >= len(items), timeout=30,
                   message="every real item to complete")
        wait_until(lambda: len(dead_letters(r)) >= len(planted) and stats(r, "s1").get("work|running") == 0,
                   timeout=30, message="the planted messages to be dead-lettered")
        counts = stats(r, "s1")
        assert counts["work|completed"] == len(items) and counts["work|done"] == len(items), counts
        assert counts.get("work|failed", 0) == 0 and counts["work|running"] == 0, counts
        entries = deadletters(r)
        assert len(entries) == len(planted), entries
        reasons = " | ".join(e["reason"] for e in entries)
        assert "nested too deeply" in reasons, reasons
        assert "not valid UTF-8" in reasons, reasons
        assert "not an item of session s1" in reasons or "no live entry" in reasons, reasons
        assert all((e["stage"], e["session"]) == ("work", "s1") for e in entries), entries
        status = next(q for q in engine.snapshot().queues if q.name == "work:s1")
        assert status.dead_lettered == len(planted) and status.completed == len(items), status
        assert r.hlen(K.outcomes("s1")) == 0, r.hgetall(K.outcomes("s1"))
        assert not (tmp_path / "data" / "s1" / "work" / "ghost.json").exists()
        assert r.llen(queue) == 0
        log = worker.output()
        assert "Traceback" not in log, log[-3000:]
    finally:
        worker.stop()


def test_reclaiming_undecodable_messages_moves_each_to_the_dead_letter_list_once(engine, r, redis_url):
    """A dead worker's in-flight list holding a deep array and a 0xff message: its reclaim moves
    each to the dead-letter list with its reason, once (it used to fail on every try, forever)."""

    from tests.test_engine_queue import make_record

    engine.register_session(make_record(), items=3)
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    link.beat(5, 12.5, {})
    binary = raw_client(redis_url)
    plant_inflight(binary, "w1", "s1", DEEP.encode(), b'{"i":"i1","s":"s1","t":"a","a":0,"m":{"x":"\xff"}}')
    report = engine.reclaim_worker("w1", force=True, reason="test")
    assert report.deadletter == 2, report
    assert len(held(r, "w1")) == 0
    reasons = [e["reason"] for e in deadletters(r)]
    assert len(reasons) == 2 and "nested too deeply" in reasons[0] and "not valid UTF-8" in reasons[1], reasons
    again = engine.reclaim_worker("w1", force=True, reason="test")
    assert again.deadletter == 0 and len(dead_letters(r)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--pool", "p"), ("--roles", "work")],
                         ids=["every-stage", "pool", "roles"])
def test_every_worker_mode_works_under_the_applied_worker_rule(tmp_path, mode):
    """`symphony acl worker --apply`, then a burst worker in each mode logged in as that user:
    the session drains (one item fails: the host's failure record is written too) and nothing
    was refused (ACL LOG empty). --roles needed HKEYS."""
    from symphony.engine import EmbeddedRedis
    from tests.test_security import WORKER_PW, acl_log, as_user, clean_env, cli, outputs, small_session

    pw_file = tmp_path / "worker.pw"
    pw_file.write_text(WORKER_PW + "\n")
    (tmp_path / "redis").mkdir()
    with EmbeddedRedis(directory=str(tmp_path / "redis")) as server:
        session = small_session(tmp_path, handler="tests.handlers:fail_some", params={"bad": ["i3"]})
        admin_env = clean_env(REDIS_URL=server.url)
        assert cli("initialize", str(session), env=admin_env).returncode == 0
        applied = cli("acl", "worker", "--apply", "--password-file", str(pw_file), env=admin_env)
        assert applied.returncode == 0, applied.stderr
        with server.client() as admin:
            admin.execute_command("ACL", "LOG", "RESET")
        env = clean_env(REDIS_URL=as_user(server, "symphony-worker", WORKER_PW))
        worker = WorkerRun(server.url, "--burst", "--processes", "1", "--wait-for-redis", "20", *mode,
                           log_dir=tmp_path, env=env)
        code = worker.wait(60)
        log = worker.output()
        worker.stop()
        assert code == 0, log
        assert outputs(tmp_path) == ["i0", "i1", "i2"], log
        assert "i3" in r_outcomes(server), log
        assert acl_log(server) == [], acl_log(server)


def test_a_host_is_quarantined_only_while_another_host_completes_tasks(engine, r):
    """The record behind the quarantine: a streak of failures alone (no other host succeeding:
    the tasks are to blame) sets nothing aside; the same streak while another host completes
    tasks does, for a while, with an event that says why."""
    from symphony.engine.outcomes import HOST_FAILURE_STREAK, QUARANTINE_S

    alone = engine.report_host("hostA", "a", failed=HOST_FAILURE_STREAK + 3)
    assert alone.streak == HOST_FAILURE_STREAK + 3 and not alone.quarantined_s and alone.healthy_peers == 0
    # another host that fails half of its tasks too (items that fail everywhere): not healthier
    engine.report_host("hostB", "a", failed=4, completed=4)
    assert not engine.report_host("hostA", "a", failed=2).quarantined_s
    # a host healthy at another stage is no peer at this one
    engine.report_host("hostC", "b", completed=20)
    assert not engine.report_host("hostA", "a", failed=1).quarantined_s
    assert engine.report_host("hostB", "a", completed=20).healthy_peers == 0
    now = engine.report_host("hostA", "a", failed=1)
    assert now.quarantined_s > QUARANTINE_S - 5 and now.healthy_peers == 1, now
    assert set(engine.quarantined_hosts()) == {"hostA"}
    events = [f for _, f in r.xrange(K.events) if f.get("kind") == "host_quarantined"]
    assert len(events) == 1 and "host hostA set aside" in events[0]["msg"], events
    # hostB, still completing, has hostA as no healthy peer (it is quarantined)
    assert engine.report_host("hostB", "a", completed=1).healthy_peers == 0
    # a completion ends a streak
    engine.report_host("hostD", "a", failed=3)
    assert engine.report_host("hostD", "a", completed=1).streak == 0


@pytest.mark.slow
def test_a_host_whose_handlers_all_fail_is_set_aside_and_its_retries_run_elsewhere(engine, r, redis_url, tmp_path):
    """Host 'good' completes tasks; host 'broken' (its environment breaks every handler) joins:
    its failures' retries go to 'good', it is quarantined after a few and claims nothing more,
    its worker shows as quarantined; no item fails although each has only two attempts."""
    from tests.helpers import worker_env

    items = [f"i{n:02d}" for n in range(40)]
    initialize_session(engine, load_session(one_stage(tmp_path, items, handler="tests.handlers:broken_host",
                                                      max_attempts=2, params={"seconds": 0.05})))
    good = WorkerRun(redis_url, "--processes", "1", "--name", "good", log_dir=tmp_path, heartbeat=0.5,
                     env=worker_env(redis_url, SYMPHONY_HOSTNAME="good"))
    broken = None
    try:
        wait_until(lambda: stats(r, "s1").get("work|completed", 0) >= 2, timeout=30, message="host good to complete")
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "BROKEN").write_text("")
        broken = WorkerRun(redis_url, "--processes", "2", "--name", "broken", log_dir=tmp_path, heartbeat=0.5,
                           cwd=tmp_path / "broken", env=worker_env(redis_url, SYMPHONY_HOSTNAME="broken"))
        wait_until(lambda: "broken" in engine.quarantined_hosts(), timeout=60, message="host broken to be set aside")

        def broken_rows() -> list[dict]:
            rows = []
            for worker_id in r.zrange(K.workers, 0, -1):
                row = r.hgetall(K.worker(worker_id))
                if row.get("host") == "broken":
                    rows.append(row)
            return rows

        wait_until(lambda: stats(r, "s1").get("work|completed", 0) >= len(items), timeout=90,
                   message="every item to complete")
        counts = stats(r, "s1")
        assert counts.get("work|failed", 0) == 0 and counts["work|done"] == len(items), counts
        assert r.hlen(K.outcomes("s1")) == 0
        wait_until(lambda: any(row.get("state") == "quarantined" for row in broken_rows()), timeout=20,
                   message="a worker of host broken to show as quarantined")
        assert "set aside" in broken.output()
    finally:
        if broken is not None:
            broken.stop()
        good.stop()


@pytest.mark.slow
def test_sigterm_to_the_workers_is_a_stop_not_a_loss(engine, r, redis_url, tmp_path):
    """SIGTERM to the whole group while tasks run: the log says they stopped, nothing says a
    worker was lost or died, and no worker_lost event is recorded."""
    import os
    import signal

    initialize_session(engine, load_session(one_stage(tmp_path, [f"i{n}" for n in range(6)],
                                                      handler="tests.handlers:hang", params={"hang": 1.0})))
    worker = WorkerRun(redis_url, "--processes", "2", log_dir=tmp_path, heartbeat=0.5)
    try:
        markers = tmp_path / "data" / "markers"
        wait_until(lambda: markers.is_dir() and len(list(markers.glob("started-*"))) >= 2, timeout=30,
                   message="both processes to run a task")
        os.killpg(worker.process.pid, signal.SIGTERM)
        assert worker.wait(60) == 0
        log = worker.output()
        assert "all workers stopped" in log, log
        assert " lost" not in log and "died" not in log and "exited with code" not in log, log
        kinds = [f.get("kind") for _, f in r.xrange(K.events)]
        assert "worker_lost" not in kinds, kinds
    finally:
        worker.stop()


def test_a_child_ended_by_the_stop_signal_is_said_to_have_stopped(engine, r, redis_url, caplog):
    """A worker process the stop signal ends before its own handler is in place (it was starting)
    exits by SIGTERM: it stopped, it was not lost; its task goes back uncharged."""
    import logging
    import signal

    from symphony.engine import resolve_redis
    from symphony.workers.options import WorkerOptions
    from symphony.workers.supervisor import Supervisor
    from tests.test_engine_queue import make_record

    engine.register_session(make_record(), items=3)
    engine.enqueue("s1", "a", [("i1", None)])
    link = engine.worker_link("w1", ["a"])
    link.beat(5, 12.5, {})
    assert link.step(want=1).claimed is None  # the first step only reads the hints
    assert link.step(want=1).claimed is not None
    supervisor = Supervisor(WorkerOptions(redis=resolve_redis(redis_url), processes=1))
    supervisor.stop_event.set()
    slot = supervisor.slots[0]
    slot.worker_id = "w1"
    with caplog.at_level(logging.INFO, logger="symphony"):
        supervisor._child_ended(slot, 4242, -signal.SIGTERM)
        supervisor._flush_reclaims()
    text = caplog.text
    assert "worker w1 stopped (process 4242 ended by SIGTERM" in text and "died" not in text, text
    kinds = [f.get("kind") for _, f in r.xrange(K.events)]
    assert "worker_stopped" in kinds and "worker_lost" not in kinds, kinds
    assert r.lrange(K.queue("a", "s1"), 0, -1) and '"a":0' in r.lindex(K.queue("a", "s1"), 0), r.lrange(K.queue("a", "s1"), 0, -1)
    supervisor.engine.close()


@pytest.mark.parametrize("raw", [DEEP, '{"a":' * 100_000 + "1" + "}" * 100_000, "[" * 5_000_000,
                                 "\udcff{}", b"\xff\xfe{}", '{"i":"a\udcff","s":"s","t":"x","a":0}',
                                 '{"i":"a","s":"s","t":"x","a":0,"m":{"k":"\udcff"}}', "\x00", "", "null",
                                 '{"i":"a","s":"s","t":"x","a":0,"h":5}', '{"i":"a","s":"s","t":"x","a":1e999}'])
def test_decoding_any_message_raises_only_invalid_message(raw):
    from symphony.engine.messages import InvalidMessage, decode_task

    with pytest.raises(InvalidMessage):
        decode_task(raw)


def test_one_claim_of_real_and_undecodable_messages_gives_every_real_task(engine, r, redis_url):
    """A batch claim whose reply holds a deep array and a 0xff message among real tasks: the
    reply decodes, the real tasks come out as tasks, the others as invalid with their reason;
    reported together, the real ones complete and the others go to the dead-letter list."""

    from symphony.engine import Finish, Outcome, OutcomeKind
    from tests.test_engine_queue import make_record

    engine.register_session(make_record(stages=("a",)), items=3)
    engine.enqueue("s1", "a", [("i1", None), ("i2", None), ("i3", None)])
    binary = raw_client(redis_url)
    real = binary.lrange(K.queue("a", "s1"), 0, -1)
    binary.delete(K.queue("a", "s1"))
    binary.rpush(K.queue("a", "s1"), real[0], DEEP.encode(), real[1], b'{"i":"i3","s":"s1","t":"a","a":0,"m":{"x":"\xff"}}',
                 real[2])
    link = engine.worker_link("w1", ["a"])
    link.beat(5, 12.5, {})
    batch = ()
    for _ in range(3):
        batch = link.step(want=8).batch or batch
        if batch:
            break
    assert [c.item for c in batch if c.task] == ["i1", "i2", "i3"], batch
    invalid = [c.invalid for c in batch if c.invalid]
    assert len(invalid) == 2 and "nested too deeply" in invalid[0] and "not valid UTF-8" in invalid[1], invalid
    reports = [Finish(c, Outcome(OutcomeKind.DONE)) if c.task else Finish(c, Outcome(OutcomeKind.DEADLETTER,
                                                                                       error=c.invalid), attempts=0)
               for c in batch]
    result = link.step(reports, claim=False)
    assert list(result.outcomes) == ["done", "deadletter", "done", "deadletter", "done"], result.outcomes
    assert len(held(r, "w1")) == 0
    assert r.hget(K.stats("s1"), "a|completed") == "3" and r.hget(K.stats("s1"), "a|running") == "0"
    assert [e["reason"][:17] for e in deadletters(r)] == ["not valid UTF-8 (", "nested too deeply"]
