"""The operator's verbs on a session: cancel, retry, purge; and what they look at: failures,
session detail, the list of queues."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from .errors import SessionConflict, UnknownSession
from .fleet import FleetOps
from .jobstore import last_job
from .messages import InvalidMessage, Sealed, decode_task
from .outcomes import RETRYABLE, STOPPED, InvalidRecord, OutcomeKind, OutcomeRecord, SessionState
from .registry import SessionSummary, add_event, list_sessions, load_record, note_change, set_session_state
from .scripts import load_all, scripts
from .snapshot import STATES, QueueStatus, SessionStatus

CANCEL_BATCH = 5000


@dataclass(frozen=True)
class CancelResult:
    session: str
    cancelled: int  # waiting tasks cancelled now
    in_flight: int  # running tasks: they end as cancelled when their workers report


@dataclass(frozen=True)
class RetryResult:
    session: str
    requeued: int
    by_stage: Mapping[str, int] = field(default_factory=dict)
    skipped: int = 0


@dataclass(frozen=True)
class PurgeResult:
    session: str
    keys_deleted: int
    job_keys_deleted: int = 0


@dataclass(frozen=True)
class SessionDetail:
    status: SessionStatus
    queues: tuple[QueueStatus, ...]
    failures: tuple[OutcomeRecord, ...]
    last_job_id: str | None
    last_job: Mapping[str, str]
    file: str = ""
    root: str = ""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    role: str
    session: str
    session_state: str
    length: int
    kind: str  # the key's Redis type: list, none, or something else (a clash)

    @property
    def clash(self) -> bool:
        return self.kind not in ("list", "none")


def _stages(engine: Any, session: str) -> list[str]:
    raw = engine.client.hget(engine.keys.sessions, session)
    if raw is None:
        raise UnknownSession(f"no session named {session!r} is registered")
    return list(SessionSummary.from_json(session, raw).stages)


# What cancelling a session does, in the words of the CLI's help, the console's dialog and
# docs/sessions.md (all three say this one text).
CANCEL_EFFECT = ("Its waiting tasks (queued or retrying) are removed and recorded as cancelled; its running tasks "
                 "are stopped within a heartbeat and recorded as cancelled, their partial outputs discarded. Outputs "
                 "already written stay. Initializing it again with resume (symphony initialize --resume) runs it "
                 "again.")


def cancel_session(engine: Any, session: str) -> CancelResult:
    """Mark the session cancelled (workers stop claiming it, running commands are interrupted,
    finishing tasks are recorded as cancelled), then cancel every waiting task."""
    keys, client, lua = engine.keys, engine.client, scripts()
    stages = _stages(engine, session)
    set_session_state(client, keys, session, SessionState.CANCELLED)
    total = 0
    for stage in stages:
        while True:
            n, remaining = lua.cancel(client, (keys.session(session), keys.stats(session), keys.live(session),
                                               keys.outcomes(session), keys.queue(stage, session),
                                               keys.delayed(stage, session)),
                                      (stage, session, CANCEL_BATCH))
            total += int(n)
            if int(remaining) == 0 or int(n) == 0:
                break
        if int(remaining) == 0:  # nothing left to claim: out of the stage's ready set (fleet slot)
            with client.pipeline(transaction=True) as pipe:
                pipe.zrem(keys.ready(stage), session)
                pipe.hdel(keys.ready_version(stage), session)
                pipe.execute()
    stats = client.hgetall(keys.stats(session))
    running = sum(max(0, int(stats.get(f"{s}|running", 0) or 0)) for s in stages)
    add_event(client, keys, "cancel", f"session {session} cancelled: {total} waiting task(s) cancelled, "
                                      f"{running} running", session=session)
    return CancelResult(session, total, running)


def iter_outcomes(engine: Any, session: str) -> Iterator[OutcomeRecord]:
    """Every outcome record of ``session`` (records that cannot be read are skipped)."""
    for item, raw in engine.client.hscan_iter(engine.keys.outcomes(session), count=1000):
        try:
            yield OutcomeRecord.decode(item, raw)
        except InvalidRecord:
            continue


def _retried(record: OutcomeRecord) -> tuple[str, Any, int | None]:
    """What ``enqueue`` takes to put a stopped item back: its id, metadata and ordinal, from the
    message it had (encrypted task data is carried over as it is: retry needs no key)."""
    try:
        task = decode_task(record.task)
    except InvalidMessage:
        return record.item, None, None
    return record.item, Sealed(task.sealed) if task.sealed is not None else task.meta, task.ordinal


def retry_session(engine: Any, session: str, stage: str | None = None,
                  states: Iterable[str] = RETRYABLE) -> RetryResult:
    """Put failed (and timed-out) tasks back in their queues with fresh attempts."""
    record, state = load_record(engine.client, engine.keys, session)
    if state == SessionState.CANCELLED:
        raise SessionConflict(f"session {session!r} is cancelled; use 'symphony initialize --resume' to run it again")
    if stage is not None:
        if not record.pipeline.has_stage(stage):
            raise UnknownSession(f"session {session!r} has no stage {stage!r} "
                                 f"(stages: {', '.join(record.pipeline.stage_names)})")
        stage = record.pipeline.canonical(stage)
    wanted = {OutcomeKind(s) for s in states}
    groups: dict[str, list[tuple[str, Any, int | None]]] = defaultdict(list)
    for outcome in iter_outcomes(engine, session):
        if outcome.state in wanted and (not stage or outcome.stage == stage):
            groups[outcome.stage].append(_retried(outcome))
    by_stage, skipped = {}, 0
    for stage_name, items in groups.items():
        if not stage_name:
            continue
        result = engine.enqueue(session, stage_name, items)
        by_stage[stage_name] = result.added
        skipped += result.skipped
    total = sum(by_stage.values())
    if total:
        add_event(engine.client, engine.keys, "retry", f"retry of {session}: {total} task(s) back in their queues",
                  session=session)
    return RetryResult(session, total, by_stage, skipped)


def resume_cancelled(engine: Any, session: str) -> int:
    """Enqueue every cancelled task of ``session`` again at the stage it was cancelled at, with
    fresh attempts (``initialize --resume`` of a cancelled session); returns how many."""
    groups: dict[str, list[tuple[str, Any, int | None]]] = defaultdict(list)
    for outcome in iter_outcomes(engine, session):
        if outcome.state == OutcomeKind.CANCELLED and outcome.stage:
            groups[outcome.stage].append(_retried(outcome))
    return sum(engine.enqueue(session, stage, items).added for stage, items in groups.items())


def purge_session(engine: Any, session: str, *, job_keys: bool = False, force: bool = False) -> PurgeResult:
    """Forget everything Redis keeps about a session (the cleanup of finished work): queues, accounting,
    failure records, registration; with ``job_keys`` also the jobs' own key/values. Outputs on
    disk are untouched. Refused while tasks are queued or running, unless ``force``."""
    keys, client = engine.keys, engine.client
    stages = _stages(engine, session)
    state = client.hget(keys.session(session), "state")
    live = client.hlen(keys.live(session))
    if live and state != SessionState.CANCELLED and not force:
        raise SessionConflict(f"session {session!r} still has {live} item(s) queued or running; "
                              "cancel it first ('symphony cancel'), or pass --force")
    job_deleted = 0
    if job_keys:
        batch: list[str] = []
        for job_id in client.sscan_iter(keys.jobs(session), count=1000):
            stage, _, item = job_id.partition(":")
            batch.append(keys.job(session, stage, item))
            if len(batch) >= 1000:
                job_deleted += client.delete(*batch)
                batch = []
        if batch:
            job_deleted += client.delete(*batch)
    names = [keys.stats(session), keys.live(session), keys.outcomes(session), keys.session(session),
             keys.last_job(session)]
    if job_keys:
        names.append(keys.jobs(session))
    for stage in stages:
        names += [keys.queue(stage, session), keys.delayed(stage, session), keys.done(session, stage)]
    names += [keys.deadletter(session), keys.scratch(session)]
    load_all(client)
    for _ in range(5):  # the session's slot first (its keys, its tasks in flight), then the fleet's
        holders = sorted(client.smembers(keys.holders(session)))
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(*names)
            scripts().unclaim.queue(pipe, (keys.holders(session), *(keys.inflight(session, w) for w in holders)),
                                    (session, *holders))
            deleted, unclaimed = pipe.execute()
        if unclaimed[0] != "again":
            break
    else:
        raise SessionConflict(f"workers kept claiming from session {session!r} while it was purged; purge it again")
    fleet = FleetOps()
    for at in range(1, len(unclaimed), 3):  # tasks still running for it: their permits go back
        worker, stage, n = unclaimed[at], unclaimed[at + 1], int(unclaimed[at + 2])
        if stage:
            fleet.release(keys, stage, n, worker)
    with client.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.sessions, session)
        pipe.hdel(keys.steering, session)
        for stage in stages:
            pipe.zrem(keys.ready(stage), session)
            pipe.hdel(keys.ready_version(stage), session)
        for worker in holders:
            pipe.srem(keys.holds(worker), session)
        if fleet:
            fleet.queue(pipe)
        pipe.execute()
    _recompute_pools(engine)
    note_change(client, keys, session, "purged")  # after the pools: a worker that re-reads them sees them without it
    add_event(client, keys, "purge", f"session {session} purged" + (" with its jobs' key/values" if job_keys else ""),
              session=session)
    return PurgeResult(session, int(deleted), int(job_deleted))


def _recompute_pools(engine: Any) -> None:
    pools: dict[str, set[str]] = defaultdict(set)
    for summary in list_sessions(engine.client, engine.keys):
        for stage, pool in zip(summary.stages, summary.pools):
            pools[pool].add(stage)
    with engine.client.pipeline(transaction=True) as pipe:
        pipe.delete(engine.keys.pools)
        if pools:
            pipe.hset(engine.keys.pools, mapping={p: json.dumps(sorted(r)) for p, r in pools.items()})
        pipe.execute()


def failures(engine: Any, session: str, limit: int = 200, states: Iterable[str] = STOPPED
             ) -> tuple[OutcomeRecord, ...]:
    """Up to ``limit`` outcome records of ``session`` (failed, timed out, cancelled), newest first."""
    wanted = {OutcomeKind(s) for s in states}
    out: list[OutcomeRecord] = []
    for record in iter_outcomes(engine, session):
        if record.state not in wanted:
            continue
        out.append(record)
        if len(out) >= limit:
            break
    out.sort(key=lambda f: f.at_ms, reverse=True)
    return tuple(out)


def session_detail(engine: Any, session: str, failure_limit: int = 50) -> SessionDetail:
    snap_session, queues = None, []
    snapshot = engine.snapshot(events=1)
    for s in snapshot.sessions:
        if s.name == session:
            snap_session = s
    if snap_session is None:
        raise UnknownSession(f"no session named {session!r} is registered")
    queues = tuple(q for q in snapshot.queues if q.session == session)
    job_id, kv = last_job(engine.client, engine.keys, session)
    try:
        root = load_record(engine.client, engine.keys, session)[0].root
    except UnknownSession:  # purged meanwhile
        root = ""
    return SessionDetail(status=snap_session, queues=queues, failures=failures(engine, session, failure_limit),
                         last_job_id=job_id, last_job=kv, file=snap_session.file, root=root)


def list_queues(engine: Any) -> list[QueueInfo]:
    """Every queue of every registered session, with its length: what operators used ``KEYS *``
    for, without ``KEYS``. A key of a queue's name that is not a list is shown as a clash."""
    summaries = list_sessions(engine.client, engine.keys)
    pairs = [(s, stage) for s in summaries for stage in s.stages]
    with engine.client.pipeline(transaction=False) as pipe:
        for summary, stage in pairs:
            name = engine.keys.queue(stage, summary.name)
            pipe.type(name)
            pipe.llen(name)
        replies = pipe.execute(raise_on_error=False)
    out = []
    for index, (summary, stage) in enumerate(pairs):
        kind, length = replies[2 * index], replies[2 * index + 1]
        out.append(QueueInfo(name=engine.keys.queue(stage, summary.name), role=stage, session=summary.name,
                             session_state=summary.state, kind=str(kind),
                             length=int(length) if isinstance(length, int) else 0))
    return out


__all__ = ["CancelResult", "PurgeResult", "QueueInfo", "RetryResult", "SessionDetail", "STATES",
           "cancel_session", "failures", "list_queues", "purge_session", "retry_session", "session_detail"]
