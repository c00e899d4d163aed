"""Engine-level faults against a real Redis: lost replies, outages, and who may judge a lease.

Each test reproduces one way an outage used to lose or steal work, with the real mechanism
(a reply lost to a socket timeout, Redis not answering for a while), not a mock.
"""
from __future__ import annotations

import time

import pytest
import redis

from engine import DONE, Engine, Finish, Outcome, resolve_redis
from engine.scripts import load_all
from tests.helpers import wait_until
from tests.test_engine_queue import claim, make_record


@pytest.fixture
def session(engine):
    record = make_record()
    engine.register_session(record, items=3)
    return record


def outage(r: redis.Redis, seconds: float) -> None:
    """Redis answers nobody for ``seconds`` (every client's commands wait, as when it is paused)."""
    r.client_pause(int(seconds * 1000), all=True)


def test_a_claim_whose_reply_was_lost_is_delivered_again_not_orphaned(own_redis):
    """The claim ran on the server but its reply never reached the worker (Redis was paused with
    SIGSTOP and the worker's socket timed out). Before the fix the worker, knowing nothing of
    that task, claimed the next one: the first stayed in its in-flight list for as long as the
    worker lived, never run and never reclaimed (its lease was alive): a silently stuck job."""
    admin = Engine(resolve_redis(own_redis.url))
    impatient = Engine(resolve_redis(own_redis.url), socket_timeout=0.3)
    r = own_redis.client()
    try:
        load_all(admin.client)
        admin.register_session(make_record(), items=2)
        admin.enqueue("s1", "a", [("i1", None), ("i2", None)])
        link = impatient.worker_link("w1", ["a"])
        link.beat(5, 12.5, {})
        link.step()  # learns which queue has work (a hint); claims nothing yet
        assert link.hint is not None
        own_redis.pause()
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                link.step()  # the claim is sent; its reply is lost to the timeout
        finally:
            own_redis.resume()
        wait_until(lambda: r.llen("symphony:inflight:w1") == 1, message="the claim to run once Redis resumed")
        again = link.step()
        assert again.claimed is not None
        assert again.claimed.task.item == "i1", "the orphaned task must be delivered again"
        assert r.lrange("symphony:inflight:w1", 0, -1) == [again.claimed.raw]
        assert r.hget("symphony:stats:s1", "a|running") == "1"  # counted once, not twice
        link.step(Finish(again.claimed, Outcome(DONE), next_stage="b", attempts=1), claim=False)
        assert r.llen("symphony:inflight:w1") == 0 and r.hget("symphony:stats:s1", "a|running") == "0"
    finally:
        impatient.close()
        admin.close()
        r.close()
