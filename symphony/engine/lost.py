"""Why a worker's report found its task gone (``finish.lua`` answered ``lost``).

A report is lost when the task is no longer in the worker's in-flight list. Three things do
that, and the worker's log must say which one happened:

* the lease was **reclaimed**: a reaper judged the worker dead (its lease lapsed) or its
  supervisor reclaimed it, and recorded a ``worker_lost`` event naming it;
* the report had been **recorded** already: it was sent again after a failed attempt whose
  reply was lost, and the first attempt went through (its completion is in the results stream,
  or its retry or hand-back is where finish.lua put it);
* neither can be shown: Redis **lost its data** (a flush, a restart without its AOF) or an
  operator removed the worker's tasks. Nothing was recorded; the output, if any, stays on disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from .keys import Keys
from .lease import Finish
from .messages import wire
from .outcomes import OutcomeKind

EVENTS_LOOKED_AT = 500  # recent events searched for the worker_lost event naming this worker
RESULTS_LOOKED_AT = 2000  # recent results searched for the first attempt's record

RECLAIMED, RECORDED, GONE = "reclaimed", "recorded", "gone"


@dataclass(frozen=True)
class LostReport:
    kind: str  # reclaimed | recorded | gone
    detail: str = ""  # for reclaimed: the event's message


def why_lost(client: redis.Redis, keys: Keys, worker_id: str, finish: Finish, *, resent: bool) -> LostReport:
    """Which of the three happened to ``finish`` (two pipelined reads, on this rare path only)."""
    claimed = finish.claimed
    kind = finish.outcome.kind
    with client.pipeline(transaction=False) as pipe:
        pipe.xrevrange(keys.events, count=EVENTS_LOOKED_AT)
        if resent and kind == OutcomeKind.RETRY and claimed.task is not None:
            pipe.zscore(keys.delayed(claimed.role, claimed.session), claimed.task.next_attempt().encode())
        elif resent and kind == OutcomeKind.HANDBACK:
            pipe.lpos(keys.queue(claimed.role, claimed.session), wire(claimed.raw))
        elif resent:
            pipe.xrevrange(keys.results, count=RESULTS_LOOKED_AT)
        replies = pipe.execute()
    for _, event in replies[0]:
        if event.get("kind") == "worker_lost" and event.get("worker") == worker_id:
            return LostReport(RECLAIMED, event.get("msg", ""))
    if resent and _recorded(replies[1], finish, worker_id):
        return LostReport(RECORDED)
    return LostReport(GONE)


def _recorded(reply, finish: Finish, worker_id: str) -> bool:
    kind = finish.outcome.kind
    if kind in (OutcomeKind.RETRY, OutcomeKind.HANDBACK):
        return reply is not None
    claimed = finish.claimed
    state = "completed" if kind == OutcomeKind.DONE else str(kind)
    for _, entry in reply or ():
        if (entry.get("w") == worker_id and entry.get("i") == claimed.item and entry.get("s") == claimed.session
                and entry.get("t") == claimed.role and entry.get("st") == state):
            return True
    return False
