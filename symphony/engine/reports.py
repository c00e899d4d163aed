"""A worker's reports: the ``finish.lua`` calls (the session's slot) and their fleet side.

Reports of one stage of one session with the same outcome travel in one ``finish.lua`` call;
what follows from them for the fleet (the results stream, the durations histogram, the next
role's ready set and bell, a limited stage's permits) is predicted into the step's ``fleet.lua``
call, sent in the same round trip (symphony/engine/fleet.py). A prediction that turned out wrong
(a report whose task was reclaimed meanwhile, or whose session was cancelled) is undone after the
replies, in one more round trip on that rare path only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

from .fleet import FleetOps
from .messages import printable, wire
from .outcomes import MAX_ERROR, MAX_STDERR, STOPPED, OutcomeKind
from .scripts import Queued

if TYPE_CHECKING:
    from .lease import Finish, WorkerLink

BELL_MAX = 64  # as lease.BELL_MAX
FINISH_GROUP_MAX = 64  # reports per finish.lua call
# the durations histogram's buckets (upper bounds, ms); readers take them from the field names
# (symphony/engine/durations.py)
DURATION_BOUNDS_MS = (10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000, 3600000)


def duration_bucket(ms: int) -> str:
    """The durations histogram's field for a task of ``ms`` (its bucket's upper bound, or ``inf``)."""
    for bound in DURATION_BOUNDS_MS:
        if ms <= bound:
            return str(bound)
    return "inf"


@dataclass
class ReportGroup:
    """One ``finish.lua`` call and what its fleet side predicted (undone if a report was lost)."""

    finishes: Sequence[Finish]
    queued: Queued
    results: list[int] = field(default_factory=list)  # fleet ops writing results entries, per finish


def _group(link: WorkerLink, pipe, group: Sequence[Finish], fleet: FleetOps) -> ReportGroup:
    """One ``finish.lua`` call for reports of one stage of one session with the same outcome,
    and its fleet side (results, durations, the next role's ready set and bell, permits)."""
    k, first = link.keys, group[0]
    c, kind = first.claimed, first.outcome.kind
    stage, session = c.role, c.session
    next_stage = first.next_stage or ""
    if kind == OutcomeKind.DONE and next_stage:
        target = k.queue(next_stage, session)
    elif kind == OutcomeKind.RETRY:
        target = k.delayed(stage, session)
    elif kind == OutcomeKind.DEADLETTER:
        target = k.deadletter(session)
    else:  # handback: its own queue; otherwise unused, but still a real key of this session's stage
        target = k.queue(stage, session)
    keys = (*link._session_keys(session), target, k.done(session, stage), k.holders(session))
    args: list[Any] = [kind, stage, session, next_stage, link.worker_id]
    stops = kind in STOPPED
    for fin in group:
        args += _args(fin, kind, next_stage, stops)
    done = ReportGroup(group, link._lua.finish.queue(pipe, keys, args))
    _fleet_side(link, fleet, done, kind, stage, session, next_stage)
    return done

def _fleet_side(link: WorkerLink, fleet: FleetOps, done: ReportGroup, kind: OutcomeKind, stage: str, session: str,
                  next_stage: str) -> None:
    k, group = link.keys, done.finishes
    if kind == OutcomeKind.DONE or kind in STOPPED:
        state = "completed" if kind == OutcomeKind.DONE else str(kind)
        for fin in group:
            error = fin.outcome.error.strip()
            short = error.splitlines()[-1][:200] if error and kind != OutcomeKind.DONE else ""
            done.results.append(fleet.result(k, link.results_maxlen, session, stage, fin.claimed.item, state,
                                             fin.attempts, fin.outcome.duration_ms, link.worker_id, short))
    if kind == OutcomeKind.DONE:
        buckets: dict[str, int] = {}
        for fin in group:
            bucket = duration_bucket(fin.outcome.duration_ms)
            buckets[bucket] = buckets.get(bucket, 0) + 1
        for bucket, n in buckets.items():
            fleet.hincr(k.durations(stage), bucket, n)
        fleet.hincr(k.durations(stage), "sum_ms", sum(f.outcome.duration_ms for f in group))
        if next_stage:
            fleet.work(k, next_stage, session, ring=len(group), bell_max=BELL_MAX)
    elif kind == OutcomeKind.RETRY:
        delay = min(int(f.outcome.delay_s * 1000) for f in group)
        fleet.work(k, stage, session, delay_ms=delay, bell_max=BELL_MAX)
    elif kind == OutcomeKind.HANDBACK:
        fleet.work(k, stage, session, ring=len(group), bell_max=BELL_MAX)
    if stage in link._permitted:
        fleet.release(k, stage, len(group), link.worker_id)

def _args(fin: Finish, kind: OutcomeKind, next_stage: str, stops: bool) -> tuple[Any, ...]:
    """The 10 values ``finish.lua`` takes per task."""
    c, out, task = fin.claimed, fin.outcome, fin.claimed.task
    push = ""
    if kind == OutcomeKind.DONE and next_stage:
        push = task.at_stage(next_stage).encode() if task else ""
    elif kind == OutcomeKind.RETRY:
        if task is None:
            push = wire(c.raw)
        elif fin.charged:
            push = task.next_attempt(fin.failed_on).encode()
        else:  # not this task's fault: the same attempt again, on another host
            push = replace(task, failed_on=fin.failed_on or task.failed_on).encode()
    elif kind == OutcomeKind.HANDBACK:
        push = wire(c.raw)
    elif kind == OutcomeKind.DEADLETTER:
        push, stops = printable(c.raw), True
    error = out.error.strip()
    ordinal = task.ordinal if task is not None and task.ordinal is not None else ""
    return (wire(c.raw), c.item, push, int(out.delay_s * 1000), ordinal, out.duration_ms, fin.attempts,
            error.splitlines()[-1][:200] if error else "",
            out.error[:MAX_ERROR] if stops else "", out.stderr[-MAX_STDERR:] if stops and out.stderr else "")

def report_calls(link: WorkerLink, pipe, finishes: Sequence[Finish], fleet: FleetOps) -> list[ReportGroup]:
    """Queue the reports, grouping consecutive ones that share stage, session and outcome."""
    calls: list[_Group] = []
    group: list[Finish] = []
    shape = None
    for fin in finishes:
        this = (fin.outcome.kind, fin.claimed.role, fin.claimed.session, fin.next_stage or "")
        if group and (this != shape or len(group) >= FINISH_GROUP_MAX):
            calls.append(_group(link, pipe, group, fleet))
            group = []
        group.append(fin)
        shape = this
    if group:
        calls.append(_group(link, pipe, group, fleet))
    return calls

def amend(link: WorkerLink, groups: Sequence[ReportGroup], replies: Sequence[Any], fleet_reply: Sequence[Any]) -> None:
    """Undo what the fleet side predicted for reports that turned out otherwise (rare: a report
    found its task reclaimed, or its session cancelled): one more round trip then only."""
    k = link.keys
    fix = FleetOps()
    for g, reply in zip(groups, replies):
        first = g.finishes[0]
        kind, stage, session = first.outcome.kind, first.claimed.role, first.claimed.session
        for n, (fin, got) in enumerate(zip(g.finishes, reply)):
            if got == "lost" and g.results:
                fix.unresult(k, fleet_reply[g.results[n]])
            if got == "lost" and kind == OutcomeKind.DONE:
                fix.hincr(k.durations(stage), duration_bucket(fin.outcome.duration_ms), -1)
                fix.hincr(k.durations(stage), "sum_ms", -fin.outcome.duration_ms)
            elif got == OutcomeKind.CANCELLED and kind in (OutcomeKind.RETRY, OutcomeKind.HANDBACK):
                fix.result(k, link.results_maxlen, session, stage, fin.claimed.item, OutcomeKind.CANCELLED, fin.attempts,
                           fin.outcome.duration_ms, link.worker_id, "session cancelled")
    if fix:
        fix.call(link.client)
