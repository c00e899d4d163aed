"""Steering sessions and stages: pause and resume, priorities, concurrency and rate limits.

What the claim obeys (``lua/claim.lua``, one atomic step) lives where the claim already reads:

* a session's own hash ``symphony:session:{<s>}`` (the session's slot): ``paused`` (the whole
  session), ``paused|<stage>``, ``priority`` (0..1000, higher first), ``max_running|<stage>``
  (the session's own cap on that stage);
* a stage's hash ``{symphony}:control:<stage>`` (the fleet slot): ``max_running`` (set live by
  the operator) over ``max_running_declared`` (the pipeline's), ``running`` (the permits taken
  over the whole fleet: taken before a claim of a limited stage, given back by its reports, by the
  claim for the ones unused, and by the reaper for a dead worker's), ``rate`` over
  ``rate_declared`` (``<n>/<ms>``) and the token bucket (``tokens``, ``at``).

What the status shows is mirrored, right after (the session's slot first, then the fleet's), in
one HASH ``{symphony}:steering`` (session -> JSON), read in the snapshot's first round trip; each
stage's hash is read in the second. Every change is an event in the activity, with who made it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import redis

from symphony.spec import MAX_LIMIT, MAX_PRIORITY, parse_rate, rate_text

from .drain import operator
from .errors import SymphonyError, UnknownSession
from .keys import Keys
from .fleet import FleetOps
from .lease import BELL_MAX
from .registry import SessionSummary, add_event
from .scripts import ensure_loaded

# What pausing a session does, in the words of the CLI's help, the console's dialog and docs/control.md.
PAUSE_EFFECT = ("No new task of it is claimed from now on; tasks already running finish and are recorded as "
                "usual; its queues keep their order. Resuming lets workers claim from it again.")
PRIORITY_US = 1_000_000_000_000  # as in claim.lua: one level outranks 11.6 days of waiting


@dataclass(frozen=True)
class Steering:
    """How a session is steered: paused (all of it, or some stages), its priority, its own caps."""

    session: str
    paused: bool = False
    paused_stages: tuple[str, ...] = ()
    priority: int = 0
    max_running: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "paused_stages": list(self.paused_stages), "priority": self.priority,
                "max_running": dict(self.max_running)}

    @classmethod
    def decode(cls, session: str, raw: str | None) -> "Steering":
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        caps = data.get("max_running") if isinstance(data.get("max_running"), dict) else {}
        return cls(session, paused=bool(data.get("paused")), paused_stages=tuple(data.get("paused_stages") or ()),
                   priority=int(data.get("priority") or 0), max_running={str(k): int(v) for k, v in caps.items()})


@dataclass(frozen=True)
class StageControl:
    """A stage's fleet-wide limits and what runs now."""

    stage: str
    running: int = 0
    max_running: int | None = None  # the one in force: the operator's, else the pipeline's
    rate: str = ""  # e.g. "120/min", "" without a rate limit
    operator_limit: bool = False  # max_running was set live (symphony limit)
    operator_rate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "running": self.running, "max_running": self.max_running, "rate": self.rate,
                "max_running_set_live": self.operator_limit, "rate_set_live": self.operator_rate}

    @classmethod
    def decode(cls, stage: str, data: Mapping[str, str]) -> "StageControl":
        def num(name: str) -> int | None:
            try:
                return int(data[name])
            except (KeyError, TypeError, ValueError):
                return None

        rate = ""
        raw = data.get("rate") or data.get("rate_declared") or ""
        if "/" in raw:
            n, _, per = raw.partition("/")
            if n.isdigit() and per.isdigit():
                rate = rate_text(int(n), int(per))
        op = num("max_running")
        return cls(stage, running=max(0, num("running") or 0),
                   max_running=op if op is not None else num("max_running_declared"), rate=rate,
                   operator_limit=op is not None, operator_rate=bool(data.get("rate")))


def _summary(client: redis.Redis, keys: Keys, session: str) -> SessionSummary:
    raw = client.hget(keys.sessions, session)
    if raw is None:
        raise UnknownSession(f"no session named {session!r} is registered")
    return SessionSummary.from_json(session, raw)


def steering(client: redis.Redis, keys: Keys, session: str) -> Steering:
    return Steering.decode(session, client.hget(keys.steering, session))


def _stage_of(summary: SessionSummary, stage: str | None) -> str | None:
    if stage is None:
        return None
    if stage not in summary.stages:
        raise SymphonyError(f"session {summary.name} has no stage {stage!r} (stages: {', '.join(summary.stages)})")
    return stage


def _now_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def pause(client: redis.Redis, keys: Keys, session: str, stage: str | None = None, *, by: str | None = None) -> Steering:
    """No new claims of the session (or of one stage of it) from now on: its tasks in flight
    finish, its queues keep their order. Atomic: once this returns, no worker claims from it."""
    summary = _summary(client, keys, session)
    stage = _stage_of(summary, stage)
    now = steering(client, keys, session)
    new = (Steering(session, True, now.paused_stages, now.priority, now.max_running) if stage is None else
           Steering(session, now.paused, tuple(sorted(set(now.paused_stages) | {stage})), now.priority,
                    now.max_running))
    who = by or operator()
    client.hset(keys.session(session), "paused" if stage is None else f"paused|{stage}", who)  # its slot: claims stop
    with client.pipeline(transaction=True) as pipe:  # then the fleet's: the status, the ready sets
        pipe.hset(keys.steering, session, json.dumps(new.to_dict(), separators=(",", ":")))
        for s in (summary.stages if stage is None else (stage,)):
            pipe.zrem(keys.ready(s), session)
        add_event(pipe, keys, "pause", f"{who} paused session {session}" + (f" stage {stage}" if stage else ""),
                  session=session, stage=stage, by=who)
        pipe.execute()
    return new


def resume(client: redis.Redis, keys: Keys, session: str, stage: str | None = None, *,
           by: str | None = None) -> Steering:
    """Undo :func:`pause`: the whole session (every stage paused too), or one stage. Its
    queues are eligible again at once and idle workers are woken."""
    summary = _summary(client, keys, session)
    stage = _stage_of(summary, stage)
    now = steering(client, keys, session)
    stages = summary.stages if stage is None else (stage,)
    new = (Steering(session, False, (), now.priority, now.max_running) if stage is None else
           Steering(session, now.paused, tuple(s for s in now.paused_stages if s != stage), now.priority,
                    now.max_running))
    with client.pipeline(transaction=False) as pipe:
        for s in stages:
            pipe.llen(keys.queue(s, session))
            pipe.zrange(keys.delayed(s, session), 0, 0, withscores=True)
        reads = pipe.execute()
    who = by or operator()
    fields = ["paused", *(f"paused|{s}" for s in summary.stages)] if stage is None else [f"paused|{stage}"]
    client.hdel(keys.session(session), *fields)  # its slot first: claims may go on
    fleet = FleetOps()
    still = set(new.paused_stages) if not new.paused else set(summary.stages)
    now_ms = _now_us(client) // 1000
    for index, s in enumerate(stages):
        if s in still:
            continue
        queued, delayed = reads[2 * index], reads[2 * index + 1]
        if queued:
            fleet.work(keys, s, session, ring=min(int(queued), 8), bell_max=BELL_MAX)
        elif delayed:
            fleet.work(keys, s, session, delay_ms=max(0, int(delayed[0][1]) - now_ms))
    ensure_loaded(client)
    with client.pipeline(transaction=True) as pipe:  # then the fleet's: the status, the ready sets, the bells
        pipe.hset(keys.steering, session, json.dumps(new.to_dict(), separators=(",", ":")))
        if fleet:
            fleet.queue(pipe)
        add_event(pipe, keys, "resume", f"{who} resumed session {session}" + (f" stage {stage}" if stage else ""),
                  session=session, stage=stage, by=who)
        pipe.execute()
    return new


def set_priority(client: redis.Redis, keys: Keys, session: str, priority: int, *, by: str | None = None,
                 quiet: bool = False) -> Steering:
    """The session's priority, 0 (the default) to 1000: workers take the highest-priority ready
    session of their roles first, least recently served among equals. Takes effect at once."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise SymphonyError(f"a priority is an integer from 0 to {MAX_PRIORITY}, not {priority!r}")
    summary = _summary(client, keys, session)
    now = steering(client, keys, session)
    new = Steering(session, now.paused, now.paused_stages, priority, now.max_running)
    who = by or operator()
    score = _now_us(client) - priority * PRIORITY_US
    if priority:  # the session's slot (what claims read), then the fleet's
        client.hset(keys.session(session), "priority", priority)
    else:
        client.hdel(keys.session(session), "priority")
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.steering, session, json.dumps(new.to_dict(), separators=(",", ":")))
        for s in summary.stages:  # queues already waiting move to their new place now
            pipe.zadd(keys.ready(s), {session: score}, xx=True)
        if not quiet:
            add_event(pipe, keys, "priority", f"{who} set the priority of session {session} to {priority}",
                      session=session, by=who)
        pipe.execute()
    return new


def set_session_limit(client: redis.Redis, keys: Keys, session: str, stage: str, limit: int | None, *,
                      by: str | None = None, quiet: bool = False) -> Steering:
    """The session's own cap on its running tasks of ``stage`` (None: no cap of its own)."""
    summary = _summary(client, keys, session)
    _stage_of(summary, stage)
    _check_limit(limit)
    now = steering(client, keys, session)
    caps = {k: v for k, v in now.max_running.items() if k != stage}
    if limit is not None:
        caps[stage] = limit
    new = Steering(session, now.paused, now.paused_stages, now.priority, caps)
    who = by or operator()
    if limit is None:  # the session's slot (what claims read), then the fleet's
        client.hdel(keys.session(session), f"max_running|{stage}")
    else:
        client.hset(keys.session(session), f"max_running|{stage}", limit)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.steering, session, json.dumps(new.to_dict(), separators=(",", ":")))
        if not quiet:
            add_event(pipe, keys, "limit", f"{who} set session {session}'s max_running of {stage} to "
                      + ("none" if limit is None else str(limit)), session=session, stage=stage, by=who)
        pipe.execute()
    return new


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT):
        raise SymphonyError(f"max_running is an integer from 0 to {MAX_LIMIT:,} (or none), not {limit!r}")


_UNSET: Any = object()


def set_stage_limits(client: redis.Redis, keys: Keys, stage: str, *, max_running: Any = _UNSET, rate: Any = _UNSET,
                     by: str | None = None) -> StageControl:
    """The operator's fleet-wide limits of ``stage``, live: ``max_running`` (an int, or None to
    fall back to the pipeline's) and ``rate`` (``"120/min"``, or None to fall back)."""
    from symphony.spec import role_problem

    problem = role_problem(stage)
    if problem:
        raise SymphonyError(f"stage {stage!r}: {problem}")
    who = by or operator()
    said = []
    with client.pipeline(transaction=True) as pipe:
        if max_running is not _UNSET:
            _check_limit(max_running)
            if max_running is None:
                pipe.hdel(keys.control(stage), "max_running")
            else:
                pipe.hset(keys.control(stage), "max_running", max_running)
            said.append(f"max_running {'as declared' if max_running is None else max_running}")
        if rate is not _UNSET:
            if rate is None:
                pipe.hdel(keys.control(stage), "rate")
                said.append("rate as declared")
            else:
                try:
                    n, per = parse_rate(rate)
                except ValueError as exc:
                    raise SymphonyError(str(exc)) from None
                pipe.hset(keys.control(stage), "rate", f"{n}/{per}")
                said.append(f"rate {rate_text(n, per)}")
        if said:
            add_event(pipe, keys, "limit", f"{who} set stage {stage}'s " + ", ".join(said), stage=stage, by=who)
        pipe.execute()
    return stage_control(client, keys, [stage])[0]


def stage_control(client: redis.Redis, keys: Keys, stages: Iterable[str]) -> list[StageControl]:
    stages = list(stages)
    with client.pipeline(transaction=False) as pipe:
        for s in stages:
            pipe.hgetall(keys.control(s))
        replies = pipe.execute()
    return [StageControl.decode(s, data) for s, data in zip(stages, replies)]


def declare(client: redis.Redis, keys: Keys, spec: Any) -> None:
    """What a session file and its pipeline declare, applied when it is initialized: each
    stage's ``max_running`` and ``rate`` (fleet-wide; the latest registered pipeline's
    declaration of a stage is the one in force, under any limit the operator set live), the
    session's ``priority`` and its own ``max_running`` per stage."""
    with client.pipeline(transaction=True) as pipe:
        for stage in spec.pipeline.stages:
            if stage.max_running is not None:
                pipe.hset(keys.control(stage.name), "max_running_declared", stage.max_running)
            else:
                pipe.hdel(keys.control(stage.name), "max_running_declared")
            if stage.rate is not None:
                n, per = parse_rate(stage.rate)
                pipe.hset(keys.control(stage.name), "rate_declared", f"{n}/{per}")
            else:
                pipe.hdel(keys.control(stage.name), "rate_declared")
        pipe.execute()
    priority = getattr(spec, "priority", None)
    if priority is not None:
        set_priority(client, keys, spec.name, int(priority), by="session file", quiet=True)
    for stage, cap in (getattr(spec, "max_running", None) or {}).items():
        set_session_limit(client, keys, spec.name, stage, int(cap), by="session file", quiet=True)


def decode_controls(stages: list[str], replies: list[Any]) -> dict[str, StageControl]:
    """Each stage's control hash as read by the snapshot (flat field, value lists)."""
    return {stage: StageControl.decode(stage, dict(zip(it, it))) for stage, it in zip(stages, map(iter, replies))}


def all_steering(raw: Mapping[str, str] | Any) -> dict[str, Steering]:
    if not isinstance(raw, dict):
        return {}
    return {name: Steering.decode(name, value) for name, value in raw.items()}
