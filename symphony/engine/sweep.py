"""The ready sets heal themselves: a periodic sweep names again every active session whose
queue (or retry set) has work.

The ready sets are hints in the fleet's slot; the queues are in the sessions' slots, and no
atomic step touches both (docs/keys.md). Every step that adds work names the session after the
work is there, and a claimer takes a session out only while nothing was added since it read its
hint (``lua/fleet.lua``: ``drop``), so a session with work should never drop out. Should one
anyway (a crash between the two steps, keys restored from a backup, an operator's ``DEL``), this
sweep puts it back: at most once per ``SWEEP_MS`` over the whole fleet (the heartbeat that takes
the sweep's lock runs it, off the claim path), at the cost of one pipelined read per session.
"""
from __future__ import annotations

from typing import Any

from .fleet import FleetOps
from .keys import Keys
from .outcomes import SessionState
from .registry import SessionSummary

SWEEP_MS = 30_000  # as SWEEP_MS in lua/heartbeat.lua
SWEEP_SESSIONS = 5_000  # sessions looked at per sweep at most


def sweep_ready(client: Any, keys: Keys, bell_max: int = 64) -> int:
    """Name every active, unpaused session with queued or retrying work in its stages' ready
    sets (a session already there keeps its place); returns how many (stage, session) pairs."""
    summaries = [SessionSummary.from_json(name, raw) for name, raw in client.hgetall(keys.sessions).items()]
    active = [s for s in summaries if s.state == SessionState.ACTIVE][:SWEEP_SESSIONS]
    if not active:
        return 0
    with client.pipeline(transaction=False) as pipe:
        for s in active:
            pipe.hmget(keys.session(s.name), "state", "paused", *(f"paused|{stage}" for stage in s.stages))
            for stage in s.stages:
                pipe.llen(keys.queue(stage, s.name))
                pipe.zrange(keys.delayed(stage, s.name), 0, 0, withscores=True)
        replies = pipe.execute()
    sec, usec = client.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    fleet = FleetOps()
    at = 0
    for s in active:
        meta = replies[at]
        at += 1
        for index, stage in enumerate(s.stages):
            queued, first = replies[at], replies[at + 1]
            at += 2
            if meta[0] != SessionState.ACTIVE or meta[1] or meta[2 + index]:
                continue
            if queued:
                fleet.work(keys, stage, s.name, ring=-1, bell_max=bell_max)
            elif first:
                fleet.work(keys, stage, s.name, delay_ms=max(0, int(first[0][1]) - now_ms))
    if fleet:
        fleet.call(client)
    return fleet.ops
