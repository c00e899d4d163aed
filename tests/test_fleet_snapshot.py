"""The paged snapshot (engine/fleet_view.py): one page of the worker table and the fleet's aggregates,
read at a cost bounded by the page, in the order and with the counts the full snapshot has."""
from __future__ import annotations

from typing import Any

import pytest

from symphony.engine import Engine
from symphony.engine.scripts import execute, scripts

from .helpers import wait_until
from .redis_cluster import command_calls, servers

FLEET = 2000
PAGE = 40


def beat_many(engine: Engine, ids: list[str], *, hb_s: float = 5.0, lease_s: float = 12.5,
              state: str = "idle", per_host: int = 4) -> None:
    """Heartbeats of many workers through the real heartbeat script, pipelined."""
    keys, client = engine.keys, engine.client
    lua = scripts().heartbeat
    for start in range(0, len(ids), 500):
        with client.pipeline(transaction=False) as pipe:
            queued = []
            for n, w in enumerate(ids[start:start + 500], start):
                info: dict[str, Any] = {"name": w, "host": f"h{n // per_host:04d}", "pid": 100 + n,
                                        "pool": ("win", "linux")[n // per_host % 2], "roles": "rvm",
                                        "state": "busy" if n % 10 == 0 else state, "current": "", "done": n,
                                        "cpu": float(n % 50), "mem": 1.0, "host_cpu": float(n // per_host % 90)}
                flat = [x for pair in info.items() for x in pair]
                queued.append(lua.queue(pipe, (keys.workers, keys.worker(w), keys.clock, keys.grace, keys.epoch),
                                        (w, int(hb_s * 1000), int(lease_s * 1000), 60_000, *flat)))
            execute(client, pipe, queued)


def order(snapshot) -> list[str]:
    return [w.id for w in sorted(snapshot.workers,
                                 key=lambda w: (w.state not in ("dead", "stale"), w.pool, w.host, w.id))]


calls = command_calls


def reset_stats(r) -> None:
    for node in servers(r):
        node.config_resetstat()


@pytest.fixture
def fleet(engine) -> list[str]:
    ids = [f"w{n:05d}" for n in range(FLEET)]
    beat_many(engine, ids)
    return ids


def test_a_page_reads_only_the_page_and_a_slice_of_the_fleet(engine, r, fleet):
    reader = engine.fleet_reader()
    engine.snapshot(reader=reader, page=(0, PAGE))  # the reader's first read takes in the whole fleet once
    reset_stats(r)
    snap = engine.snapshot(reader=reader, page=(0, PAGE))
    hashes_read = calls(r, "hmget") + calls(r, "hgetall")
    assert len(snap.workers) == PAGE
    assert snap.fleet.registered == FLEET
    # the page, the oldest leases (as many as the page) and one step of the sweep (a fifteenth of the
    # fleet): far from every worker hash (a full snapshot reads all 2,000)
    assert hashes_read <= 2 * PAGE + FLEET // 10 + 50, hashes_read
    reset_stats(r)
    engine.snapshot()
    assert calls(r, "hgetall") >= FLEET  # the full snapshot, for contrast: every hash


def test_the_page_and_the_counts_are_those_of_the_full_snapshot(engine, fleet):
    full = engine.snapshot()
    reader = engine.fleet_reader()
    first = engine.snapshot(reader=reader, page=(0, PAGE))
    assert [w.id for w in first.workers] == order(full)[:PAGE]
    later = engine.snapshot(reader=reader, page=(PAGE * 3, PAGE))
    assert [w.id for w in later.workers] == order(full)[PAGE * 3:PAGE * 4]
    assert later.fleet.states == full.fleet_summary().states
    assert [(p.name, p.workers, p.states, p.hosts) for p in later.fleet.pools] == \
        [(p.name, p.workers, p.states, p.hosts) for p in full.fleet_summary().pools]
    assert len(later.fleet.hosts) == FLEET // 4
    assert later.fleet.pools[0].host_cpu == full.fleet_summary().pools[0].host_cpu
    assert later.to_dict()["fleet"]["registered"] == FLEET


def test_dead_workers_come_first_and_are_counted_at_once(engine, fleet):
    reader = engine.fleet_reader()
    engine.snapshot(reader=reader, page=(0, PAGE))
    lapsing = fleet[1500:1503]
    beat_many(engine, lapsing, hb_s=0.05, lease_s=0.1)  # leases that lapse in a tenth of a second

    def dead_first():
        snap = engine.snapshot(reader=reader, page=(0, PAGE))
        return snap if snap.fleet.count("dead") == 3 else None

    snap = wait_until(dead_first, message="the three lapsed leases counted dead")
    assert [w.id for w in snap.workers[:3]] == lapsing
    assert {w.state for w in snap.workers[:3]} == {"dead"}
    assert snap.workers[3].state not in ("dead", "stale")


def test_workers_that_come_and_go_are_found_by_the_sweep(engine, fleet):
    reader = engine.fleet_reader()
    engine.snapshot(reader=reader, page=(0, PAGE))
    newcomers = [f"x{n:03d}" for n in range(30)]
    beat_many(engine, newcomers)
    for w in fleet[:100]:
        engine.worker_link(w, ["rvm"]).retire()
    expected = FLEET - 100 + 30

    def settled():
        snap = engine.snapshot(reader=reader, page=(0, PAGE))
        return snap if (snap.fleet.registered == expected and snap.fleet.known == expected
                        and sum(p.workers for p in snap.fleet.pools) == expected) else None

    snap = wait_until(settled, message="a sweep that finds the newcomers and forgets the retired")
    assert [w.id for w in snap.workers] == order(engine.snapshot())[:PAGE]


def test_one_worker_is_read_alone(engine, fleet):
    status = engine.worker_status(fleet[7])
    assert status is not None and status.id == fleet[7] and status.pool
    assert engine.worker_status("nobody") is None


@pytest.mark.cluster
def test_the_snapshot_reads_a_redis_cluster_by_slot(cluster_url):
    """On a Redis Cluster: read.lua's calls each take keys of one slot (the queues of a session
    lie in other slots than the fleet's keys), the paged read's commands go to their key's node."""
    from symphony.engine import Keys, SessionState, resolve_redis
    from symphony.engine.registry import SessionSummary
    from symphony.engine.scripts import load_all

    keys = Keys(ns="{symphony}")  # the fleet's keys in one slot, as cluster-core's layout has them
    with Engine(resolve_redis(cluster_url), keys=keys) as engine:
        load_all(engine.client)
        stages = ("rvm", "detection")
        for n in range(6):
            name = f"block{n}"
            summary = SessionSummary(name=name, state=SessionState.ACTIVE, pipeline="p", stages=stages,
                                     pools=("win", "linux"), created=1.0, file="", items=10)
            engine.client.hset(keys.sessions, name, summary.to_json())
            for i, stage in enumerate(stages):
                engine.client.rpush(keys.queue(stage, name), *[f"x{j}" for j in range(n + i + 1)])
        slots = {engine.client.keyslot(keys.queue(s, f"block{n}")) for n in range(6) for s in stages}
        assert len(slots) > 1  # the reads must span slots
        ids = [f"w{n:03d}" for n in range(300)]
        beat_many(engine, ids)
        full = engine.snapshot()
        assert {q.name: q.queued for q in full.queues} == {
            f"{s}:block{n}": n + i + 1 for n in range(6) for i, s in enumerate(stages)}
        assert len(full.workers) == 300
        reader = engine.fleet_reader()
        paged = engine.snapshot(reader=reader, page=(0, PAGE))
        paged = engine.snapshot(reader=reader, page=(PAGE, PAGE))
        assert [w.id for w in paged.workers] == order(full)[PAGE:2 * PAGE]
        assert paged.fleet.states == full.fleet_summary().states
        assert paged.queues == full.queues
