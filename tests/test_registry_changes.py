"""The registry's change log: a worker re-reads only the sessions that changed (all of them when it
is new, fell behind the log's cap, or Redis lost its data), and the registry's writes are ordered
single-slot steps whose interruption the next registration completes."""
from __future__ import annotations

from symphony.engine import Engine, SessionRecord, load_pipeline, resolve_redis
from symphony.engine import registry
from symphony.engine.registry import CHANGES_MAXLEN
from tests.helpers import write_pipeline


def record(tmp_path, name: str, stage: str = "work", alias: str | None = None) -> SessionRecord:
    stage_def = {"name": stage, "pool": "p", "handler": "tests.handlers:ok",
                 "output": "{root}/{session}/{stage}/{item}.json"}
    if alias:
        stage_def["aliases"] = [alias]
    pipeline = load_pipeline(write_pipeline(tmp_path / f"{name}-pipe.yaml", [stage_def], name=f"{name}-pipe"))
    return SessionRecord(name=name, pipeline=pipeline, root=str(tmp_path / "data"))


def spec_reads(engine: Engine) -> int:
    """Definitions the server has given out since the statistics were reset (HGET ... spec for the
    aliases, HMGET spec state for a cached record)."""
    stats = engine.client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hget", "hmget"))


def test_a_worker_rereads_only_the_sessions_named_in_the_change_log(engine, redis_url, tmp_path):
    for n in range(5):
        engine.register_session(record(tmp_path, f"s{n}", alias=f"alias{n}"))
    worker = Engine(resolve_redis(redis_url))
    try:
        first = worker.follow_registry()
        assert first.everything
        assert worker.roles_for(roles=["alias3"]) == ["work"]
        for n in range(5):
            assert worker.records.get(f"s{n}") is not None
        engine.register_session(record(tmp_path, "late", stage="other", alias="later"))
        engine.cancel("s2")
        engine.client.config_resetstat()  # from here on, only what the worker reads is counted
        changes = worker.follow_registry()
        assert not changes.everything and changes.sessions == {"late", "s2"}
        assert [c for _, c in changes.kinds][0] == "registered"
        assert changes.touches("s2") and not changes.touches("s1")
        assert worker.roles_for(roles=["later"]) == ["other"]
        # the unchanged sessions' definitions stayed cached; the new one was read (its aliases), the
        # cancelled one's only forgotten (read when a task of it next needs it)
        for n in (0, 1, 3, 4):
            assert worker.records.get(f"s{n}") is not None
        assert spec_reads(engine) == 1, "only the new session's definition is read"
        assert worker.follow_registry().sessions == frozenset()  # nothing new: nothing re-read
        engine.cancel("s3")  # only a state: the loop need not resolve its roles again
        engine.client.config_resetstat()
        cancelled = worker.follow_registry()
        assert cancelled.kinds == (("s3", "cancelled"),) and not cancelled.roles_may_change
        assert spec_reads(engine) == 0, "a change of state only reads no definition"
        assert changes.roles_may_change
    finally:
        worker.close()


def test_a_worker_that_fell_behind_the_cap_or_whose_redis_lost_its_data_rereads_everything(engine, redis_url,
                                                                                            tmp_path):
    engine.register_session(record(tmp_path, "s0"))
    worker = Engine(resolve_redis(redis_url))
    try:
        worker.follow_registry()
        for _ in range(CHANGES_MAXLEN // 100 * 2 + 1):
            with engine.client.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    registry._publish(pipe, engine.keys, "s0", "updated")
                pipe.execute()
        assert worker.follow_registry().everything
        engine.register_session(record(tmp_path, "s1"))
        assert worker.follow_registry().sessions == {"s1"}
        assert worker.follow_registry(lost=True).everything
    finally:
        worker.close()


def test_purge_and_update_are_in_the_change_log(engine, r, redis_url, tmp_path):
    from symphony.engine.control import purge_session

    engine.register_session(record(tmp_path, "gone"))
    worker = Engine(resolve_redis(redis_url))
    try:
        worker.follow_registry()
        epoch = r.get(engine.keys.epoch)
        purge_session(engine, "gone")
        assert r.get(engine.keys.epoch) != epoch
        changes = worker.follow_registry()
        assert changes.kinds == (("gone", "purged"),)
        assert worker.records.get("gone") is None
    finally:
        worker.close()


def test_a_registration_cut_short_between_its_steps_is_completed_by_registering_again(engine, r, tmp_path):
    """The session's hash is written first (its slot), the fleet's index after: a crash between
    leaves a defined session nobody lists; initialize (or repair) registers it again and finishes."""
    rec = record(tmp_path, "half")
    registry._write_definition(engine.client, engine.keys, rec, items=3, resume=False, adopt_queues=False)
    assert r.hget(engine.keys.session("half"), "fingerprint") == rec.fingerprint()
    assert [s.name for s in engine.sessions()] == []
    assert engine.register_session(rec, items=3) == "same"
    summary = {s.name: s for s in engine.sessions()}["half"]
    assert summary.items == 3 and summary.stages == ("work",)
    assert "work" in engine.pools()["p"]
    events = [f for _, f in r.xrange(engine.keys.events)]
    assert [e["msg"] for e in events if e.get("session") == "half"] == ["session half registered"]
    # and registering once more is a confirmation: no second "registered" event
    assert engine.register_session(rec, items=3) == "same"
    assert len([e for _, e in r.xrange(engine.keys.events) if e.get("session") == "half"]) == 1
