"""An idle worker's wake-up: the bell's token names the session whose queue got work, and the
next round trip claims from it (no round trip to ask where work is first)."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K
from tests.helpers import held

from tests.test_engine_queue import make_record


class CountingPipelines:
    """Counts the round trips a link makes (a pipeline's execute is one)."""

    def __init__(self, link):
        self.count = 0
        original = link.client.pipeline

        def pipeline(*args, **kwargs):
            pipe = original(*args, **kwargs)
            execute = pipe.execute

            def counted(*a, **k):
                self.count += 1
                return execute(*a, **k)

            pipe.execute = counted
            return pipe

        link.client.pipeline = pipeline


def test_a_bell_token_names_the_session_and_the_next_step_claims_from_it(engine, r):
    engine.register_session(make_record(), items=1)
    link = engine.worker_link("w1", ["a", "b"])
    link.step()  # registers nothing to do: no hint
    assert link.hint is None
    engine.enqueue("s1", "a", [("i1", None)])
    assert r.lrange(K.bell("a"), 0, -1) == ["s1"]
    assert link.wait_for_work(1.0) is True
    assert link.hint == ("a", "s1", 0)
    trips = CountingPipelines(link)
    result = link.step(want=1)
    assert [c.item for c in result.batch] == ["i1"] and trips.count == 1  # claimed in the first round trip
    assert len(held(r, "w1")) == 1


def test_a_plain_token_sends_the_worker_to_ask_first(engine, r):
    engine.register_session(make_record(), items=1)
    link = engine.worker_link("w1", ["a"])
    engine.enqueue("s1", "a", [("i1", None)])
    r.delete(K.bell("a"))
    r.rpush(K.bell("a"), "1")  # as claim.lua and reclaim.lua ring
    link.hint = None
    assert link.wait_for_work(1.0) is True and link.hint is None
    first = link.step(want=1)
    assert not first.batch and first.eligible  # asked hints.lua: work is there
    assert [c.item for c in link.step(want=1).batch] == ["i1"]
