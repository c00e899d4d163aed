"""Reclaiming the in-flight work of dead workers.

A worker is dead when its lease (renewed by every heartbeat) has lapsed; the supervisor of a
worker process that crashed knows it at once and reclaims with ``force``. Each task goes back
to the head of its queue with its attempt count raised, or is recorded as failed if that was
its last attempt. Reaping runs under a lock with a TTL so a fleet of workers does not all do
the same work. The lease is judged in the fleet slot, then each session's tasks are given back
in that session's slot (the worker's holds index names the sessions): a worker that beats again
between the two loses the tasks it held (its reports find them gone), as after any reclaim.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import redis

from .keys import Keys
from .lease import BELL_MAX, RESULTS_MAXLEN
from .messages import InvalidMessage, decode_task, dumps, printable, wire
from .outcomes import OutcomeKind, after_failure
from .records import RecordCache
from .registry import EVENTS_MAXLEN
from .fleet import FleetOps
from .scripts import ensure_loaded, scripts

log = logging.getLogger("symphony.reclaim")
DEADLETTER_MAX = 1000  # the dead-letter list's bound (also DEADLETTER_MAX in lua/_prelude.lua)


@dataclass(frozen=True)
class ReclaimReport:
    worker: str
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0
    deadletter: int = 0
    forgotten: bool = False
    skipped: str = ""  # 'grace' or 'alive' when nothing was done

    @property
    def tasks(self) -> int:
        return self.requeued + self.failed + self.cancelled + self.deadletter


def reclaim_worker(client: redis.Redis, keys: Keys, worker_id: str, records: RecordCache, *,
                   force: bool = False, reason: str = "its lease lapsed", stopped: bool = False) -> ReclaimReport:
    """Give back every task ``worker_id`` holds; then remove it from the registry. ``stopped``:
    it was not lost but stopped (a stop signal ended it), and the log and event say so.

    First the fleet slot judges its lease (lapsed, unless ``force``); then, for each session of its
    holds index, one session-slot step per task (``reclaim.lua``); then one fleet step for what
    follows (ready sets, bells, results); then ``forget.lua`` gives back its permits."""
    judge = FleetOps()
    judge.judge(keys, worker_id, force)
    verdict = judge.call(client)[0]
    if verdict in ("grace", "alive"):
        return ReclaimReport(worker_id, skipped=verdict)
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "deadletter": 0}
    sessions = sorted(client.smembers(keys.holds(worker_id)))
    fleet = FleetOps()
    for session in sessions:
        _reclaim_session(client, keys, worker_id, session, records, counts, fleet, stopped=stopped, reason=reason)
    if fleet:
        fleet.call(client)
    total = sum(counts.values())
    if stopped:
        message = f"worker {worker_id} stopped ({reason}); {total} task(s) given back"
    else:
        message = f"worker {worker_id} lost ({reason}); {total} task(s) reclaimed"
    forgotten = forget_worker(client, keys, worker_id, sessions, force=force,
                              kind="worker_stopped" if stopped else "worker_lost", message=message)
    if total or forgotten:
        log.info(message)
    return ReclaimReport(worker_id, forgotten=forgotten, **counts)


def _reclaim_session(client: redis.Redis, keys: Keys, worker_id: str, session: str, records: RecordCache,
                     counts: dict[str, int], fleet: FleetOps, *, stopped: bool, reason: str) -> None:
    """The tasks ``worker_id`` holds in ``session``: each back to its queue, or stopped."""
    lua = scripts()
    k = keys
    inflight = keys.inflight(session, worker_id)
    entries = client.lrange(inflight, 0, -1)
    # Only the oldest task in flight is charged an attempt: a worker runs its tasks in claim
    # order, so that is the one it was running (or had finished without reporting yet). The
    # others were prefetched and never started: they go back unchanged. A task that kills its
    # worker is still charged, because a fresh worker process claims one task at a time.
    # Entries are given back from the newest, each to the head of its queue, so the queue
    # keeps their order.
    for position in range(len(entries) - 1, -1, -1):
        raw = entries[position]
        charged = position == 0 and not stopped  # a stopped worker was not running anything to blame
        try:
            task = decode_task(raw)
        except InvalidMessage as exc:  # set aside once, with its reason (the entry finish.lua writes)
            if client.lrem(inflight, 1, wire(raw)):
                sec, usec = client.time()
                entry = dumps({"at": sec * 1000 + usec // 1000, "stage": "", "session": session, "worker": worker_id,
                               "reason": str(exc), "message": printable(raw)})
                with client.pipeline(transaction=True) as pipe:
                    pipe.lpush(keys.deadletter(session), entry)
                    pipe.ltrim(keys.deadletter(session), 0, DEADLETTER_MAX - 1)
                    pipe.execute()
                log.warning("a message in flight at %s is not a task (%s); moved to the dead-letter list %s",
                            worker_id, exc, keys.deadletter(session))
                counts["deadletter"] += 1
            continue
        if task.session != session:  # not where it belongs: it is reclaimed where it was found
            task = replace(task, session=session)
        record = records.get(task.session)
        stage = record.pipeline.stage(task.stage) if record is not None and record.pipeline.has_stage(task.stage) else None
        attempts = task.attempt + 1 if charged else task.attempt
        # a stage nobody knows any more cannot run again: its task stops here
        last = stage is None or not after_failure(stage, attempts).retries
        max_attempts = stage.max_attempts if stage is not None else attempts
        failure = f"worker {worker_id} was lost during attempt {attempts} of {max_attempts} ({reason})"
        result, _ = lua.reclaim(client, (inflight, k.queue(task.stage, session), k.stats(session),
                                                k.live(session), k.outcomes(session), k.session(session),
                                                k.holders(session)),
                                       (worker_id, raw, task.next_attempt().encode() if charged else raw, task.stage,
                                        session, task.item, "1" if last else "0", attempts, failure))
        if result == "requeued":
            fleet.work(k, task.stage, session, ring=1, bell_max=BELL_MAX)
        elif result in (OutcomeKind.FAILED, OutcomeKind.CANCELLED):
            short = "session cancelled" if result == OutcomeKind.CANCELLED else "worker lost on the last attempt"
            fleet.result(k, RESULTS_MAXLEN, session, task.stage, task.item, result, attempts, 0, worker_id, short)
        if result in counts:
            counts[result] += 1


def forget_worker(client: redis.Redis, keys: Keys, worker_id: str, sessions, *, force: bool, kind: str,
                  message: str) -> bool:
    """Remove ``worker_id`` from the registry if every in-flight list it has in ``sessions`` is
    empty (looked at first, in each session's slot), giving back its permits (``forget.lua``)."""
    k = keys
    with client.pipeline(transaction=False) as pipe:
        for session in sessions:
            pipe.llen(k.inflight(session, worker_id))
        pipe.hkeys(k.permits(worker_id))
        replies = pipe.execute()
    empty = not any(replies[:-1])
    stages = sorted(replies[-1])
    ensure_loaded(client)
    return bool(scripts().forget(client, (k.workers, k.worker(worker_id), k.holds(worker_id), k.events, k.grace,
                                          k.clock, k.permits(worker_id), *(k.control(s) for s in stages)),
                                 (worker_id, "1" if force else "0", EVENTS_MAXLEN, kind, message,
                                  "1" if empty else "0", *stages)))


def lapsed_workers(client: redis.Redis, keys: Keys, limit: int = 32) -> tuple[list[str], int, int | None]:
    """Workers whose lease lapsed (empty during a grace window): (ids, grace ms, earliest expiry)."""
    now, grace, earliest, *ids = scripts().lapsed(client, (keys.workers, keys.grace, keys.clock), (limit,))
    return list(ids), int(grace), int(float(earliest)) if earliest else None


def reap(client: redis.Redis, keys: Keys, records: RecordCache, lapsed: list[str] | tuple[str, ...],
         lock_ttl_s: float = 10.0) -> list[ReclaimReport]:
    """Reclaim the tasks of every lapsed worker, if no other process is already doing it."""
    if not lapsed:
        return []
    lock = client.lock(keys.reaper_lock, timeout=lock_ttl_s, blocking=False)
    if not lock.acquire(blocking=False):
        return []
    reports = []
    try:
        for worker_id in lapsed:
            reports.append(reclaim_worker(client, keys, worker_id, records))
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # it expired: another reaper may already have taken over
    return reports
