"""The fleet-slot side of a step: hints, wake-ups, counters and permits (``lua/fleet.lua``).

Every atomic step touches one hash slot (symphony/engine/keys.py). A session's state changes in
a session-slot script; what follows from it for the fleet (its role's ready set and bell, the
results stream, the durations histogram, a limited stage's permits) is one ``fleet.lua`` call
built here, sent in the same round trip where it can be: on a single server a pipeline runs its
commands in order, so the fleet step runs after the session steps it follows. A cluster client
sends each node its share of a pipeline at once, so there :func:`run` sends the session steps
first and the fleet step after their replies (one more round trip): a wake-up never precedes
the work it announces.
"""
from __future__ import annotations

from typing import Any, Sequence

from .cluster import is_cluster
from .keys import Keys
from .scripts import Queued, ensure_loaded, execute, scripts


class FleetOps:
    """Operations for one ``fleet.lua`` call, each naming its keys by their index in KEYS."""

    __slots__ = ("keys", "args", "_index", "ops")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []
        self._index: dict[str, int] = {}
        self.ops = 0

    def __bool__(self) -> bool:
        return self.ops > 0

    def _k(self, key: str) -> int:
        at = self._index.get(key)
        if at is None:
            self.keys.append(key)
            at = self._index[key] = len(self.keys)
        return at

    def _op(self, *args: Any) -> int:
        self.args.extend(args)
        self.ops += 1
        return self.ops - 1

    def work(self, k: Keys, role: str, session: str, *, delay_ms: int | None = None, ring: int = 0,
             bell_max: int = 64) -> int:
        """Work was added for ``role`` in ``session``, eligible now (shifted by its priority) or (a
        retry) in ``delay_ms``; ``ring`` tokens on its bell (-1: one token, only if it was not in
        the ready set)."""
        return self._op("work", self._k(k.ready(role)), self._k(k.ready_version(role)), self._k(k.bell(role)),
                        session, self._k(k.steering), "" if delay_ms is None else int(delay_ms), int(ring),
                        int(bell_max))

    def bump(self, k: Keys, role: str, session: str) -> int:
        """A claimer served ``session``: to the back of the ready set, by its priority."""
        return self._op("bump", self._k(k.ready(role)), self._k(k.bell(role)), session, self._k(k.steering))

    def drop(self, k: Keys, role: str, session: str, seen: str) -> int:
        return self._op("drop", self._k(k.ready(role)), self._k(k.ready_version(role)), session, seen)

    def later(self, k: Keys, role: str, session: str, seen: str, score_us: int) -> int:
        return self._op("later", self._k(k.ready(role)), self._k(k.ready_version(role)), session, seen,
                        int(score_us))

    def result(self, k: Keys, maxlen: int, session: str, stage: str, item: str, state: str, attempts: Any,
               ms: Any, worker: str, error: str = "") -> int:
        return self._op("result", self._k(k.results), maxlen, session, stage, item, state, attempts, ms, worker,
                        error)

    def unresult(self, k: Keys, entry_id: str) -> int:
        return self._op("unresult", self._k(k.results), entry_id)

    def hincr(self, key: str, field: str, delta: int) -> int:
        return self._op("hincr", self._k(key), field, int(delta))

    def acquire(self, k: Keys, stage: str, want: int, worker_id: str) -> int:
        return self._op("acquire", self._k(k.control(stage)), self._k(k.permits(worker_id)), stage, int(want))

    def release(self, k: Keys, stage: str, n: int, worker_id: str, *, refund: bool = False) -> int:
        return self._op("release", self._k(k.control(stage)), self._k(k.permits(worker_id)), stage, int(n),
                        "1" if refund else "0")

    def worker(self, k: Keys, worker_id: str, fields: dict[str, Any]) -> int:
        flat: list[Any] = []
        for name, value in fields.items():
            flat += [name, value]
        return self._op("worker", self._k(k.worker(worker_id)), len(fields), *flat)

    def judge(self, k: Keys, worker_id: str, force: bool) -> int:
        return self._op("judge", self._k(k.clock), self._k(k.grace), self._k(k.workers), worker_id,
                        "1" if force else "0")

    def hints(self, k: Keys, roles: Sequence[str], *, limits: bool = False) -> int:
        """The queue to claim from next; ``limits``: say whether each role has fleet-wide limits
        (else only the hinted role's)."""
        roles = list(roles)
        first = len(self.keys) + 1
        for r in roles:  # contiguous: the op reads them by position (never deduplicated)
            self.keys.append(k.ready(r))
        for r in roles:
            self.keys.append(k.control(r))
        for r in roles:
            self.keys.append(k.ready_version(r))
        return self._op("hints", first, len(roles), "1" if limits else "0", *roles)

    def queue(self, pipe) -> Queued:
        return scripts().fleet.queue(pipe, self.keys, self.args)

    def call(self, client) -> list[Any]:
        ensure_loaded(client)
        return scripts().fleet(client, self.keys, self.args)


def run(client, build, fleet: FleetOps | None) -> tuple[list[Any], list[Any]]:
    """Run session-slot calls (``build(pipe)`` queues them and returns their ``Queued``) and then
    ``fleet`` (if any ops): one round trip on a single server, two on a cluster. Returns (the
    session calls' replies, the fleet reply)."""
    ensure_loaded(client)
    pipe = client.pipeline(transaction=False)
    queued: list[Queued | None] = list(build(pipe))
    ordered = not is_cluster(client)
    if fleet and ordered:
        queued.append(fleet.queue(pipe))
    replies = execute(client, pipe, queued) if queued else []
    if fleet and not ordered:
        return replies, fleet.call(client)
    if fleet:
        return replies[:-1], replies[-1]
    return replies, []
