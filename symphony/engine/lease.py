"""The worker's side of the queue: claim, finish, wait and heartbeat.

Claiming a task is one atomic step that moves it from its queue into this worker's in-flight
list; the lease on it lasts as long as the worker keeps beating. Finishing a task and
claiming the next one travel in one round trip. Idle workers block on their roles' bells
instead of polling.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import redis

from .keys import Keys
from .messages import InvalidMessage, Task, decode_task, printable, wire
from .outcomes import MAX_ERROR, MAX_STDERR, STOPPED, OutcomeKind
from .scripts import Queued, ensure_loaded, execute, scripts

log = logging.getLogger("symphony.lease")
RESULTS_MAXLEN = 10_000
BELL_MAX = 64
FINISH_GROUP_MAX = 64  # reports per finish.lua call


@dataclass(frozen=True)
class Claimed:
    """A task this worker holds: the exact message (to release it) and where it came from."""

    raw: str
    role: str
    session: str
    task: Task | None = None
    invalid: str | None = None  # why the message could not be decoded

    @property
    def item(self) -> str:
        if self.task is not None:
            return self.task.item
        import hashlib

        return "invalid-" + hashlib.sha1(self.raw.encode("utf-8", "replace")).hexdigest()[:12]


@dataclass(frozen=True)
class Outcome:
    """How a task ended, as the worker reports it."""

    kind: OutcomeKind
    error: str = ""
    stderr: str = ""
    duration_ms: int = 0
    delay_s: float = 0.0  # for retry


@dataclass(frozen=True)
class Finish:
    """A finished task waiting to be reported (kept across reconnects until Redis has it)."""

    claimed: Claimed
    outcome: Outcome
    next_stage: str | None = None  # for DONE
    attempts: int = 1  # attempts made, including this one
    failed_on: str = ""  # for RETRY and the failures: the host the attempt failed on
    charged: bool = True  # for RETRY: the attempt counts (False: it goes back as it was, for another host)


@dataclass(frozen=True)
class StepResult:
    finished: str | None = None  # None (nothing finished), 'lost', or the recorded outcome (the last report's)
    claimed: Claimed | None = None  # the first task claimed (the one to run now)
    wait_s: float = 0.0  # how long to block on bells when nothing was claimed
    eligible: bool = False  # another claim may succeed right away
    batch: tuple[Claimed, ...] = ()  # every task claimed, in order (``claimed`` is the first); see ``want``
    outcomes: tuple[str, ...] = ()  # per report sent, in order: 'lost' or the recorded outcome


@dataclass(frozen=True)
class Beat:
    now_ms: int
    known: bool  # False: the registry did not know us (new, or our leases were reclaimed)
    epoch: str
    grace_ms: int
    earliest_expiry_ms: int | None
    lapsed: tuple[str, ...] = ()


@dataclass
class WorkerLink:
    """One worker process's connection to the queues."""

    client: redis.Redis
    keys: Keys
    worker_id: str
    roles: Sequence[str] = ()
    results_maxlen: int = RESULTS_MAXLEN
    idle_wait_s: float = 2.0
    hint: tuple[str, str, int] | None = None  # (role, session, eligible-at microseconds)
    _lua: Any = field(default_factory=scripts, repr=False)
    _loaded: bool = field(default=False, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)  # key names by session / queue (hot path)

    def serve(self, roles: Sequence[str]) -> None:
        """Claim from ``roles`` from now on (the worker re-read the registry)."""
        if list(roles) != list(self.roles):
            self.roles = list(roles)
            self.hint = None

    # --- claim and finish -------------------------------------------------------------------
    def _finish_group(self, pipe, group: Sequence[Finish]) -> Queued:
        """One ``finish.lua`` call for reports of one stage of one session with the same outcome."""
        k, first = self.keys, group[0]
        c, kind = first.claimed, first.outcome.kind
        stage, session = c.role, c.session
        next_stage = first.next_stage or ""
        if kind == OutcomeKind.DONE and next_stage:
            target, ready, bell = k.queue(next_stage, session), k.ready(next_stage), k.bell(next_stage)
        elif kind == OutcomeKind.RETRY:
            target, ready, bell = k.delayed(stage, session), k.ready(stage), k.bell(stage)
        elif kind == OutcomeKind.DEADLETTER:
            target, ready, bell = k.deadletter, k.ready(stage), k.bell(stage)
        else:  # handback: its own queue; otherwise unused, but still real keys of this session's stage
            target, ready, bell = k.queue(stage, session), k.ready(stage), k.bell(stage)
        keys = (*self._session_keys(session), target, ready, bell, k.done(session, stage), k.durations(stage),
                k.control(stage))
        args: list[Any] = [kind, stage, session, next_stage, self.results_maxlen, BELL_MAX, self.worker_id]
        stops = kind in STOPPED
        for fin in group:
            args += self._finish_args(fin, kind, next_stage, stops)
        return self._lua.finish.queue(pipe, keys, args)

    @staticmethod
    def _finish_args(fin: Finish, kind: OutcomeKind, next_stage: str, stops: bool) -> tuple[Any, ...]:
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

    def _finish_calls(self, pipe, finishes: Sequence[Finish]) -> list[tuple[Queued, int]]:
        """Queue the reports, grouping consecutive ones that share stage, session and outcome."""
        calls: list[tuple[Queued, int]] = []
        group: list[Finish] = []
        shape = None
        for fin in finishes:
            this = (fin.outcome.kind, fin.claimed.role, fin.claimed.session, fin.next_stage or "")
            if group and (this != shape or len(group) >= FINISH_GROUP_MAX):
                calls.append((self._finish_group(pipe, group), len(group)))
                group = []
            group.append(fin)
            shape = this
        if group:
            calls.append((self._finish_group(pipe, group), len(group)))
        return calls

    def _session_keys(self, session: str) -> tuple[str, ...]:
        """The keys every report of ``session`` touches (built once: this is the hot path)."""
        got = self._cache.get(session)
        if got is None:
            k = self.keys
            got = (k.inflight(self.worker_id), k.worker(self.worker_id), k.stats(session), k.live(session),
                   k.outcomes(session), k.session(session), k.results)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[session] = got
        return got

    def _claim_call(self, pipe, role: str, session: str, want: int = 1) -> Queued:
        roles = tuple(self.roles)
        cache_key = (role, session, roles)
        keys = self._cache.get(cache_key)
        if keys is None:
            k = self.keys
            keys = (k.inflight(self.worker_id), k.worker(self.worker_id), k.queue(role, session),
                    k.delayed(role, session), k.ready(role), k.stats(session), k.session(session), k.bell(role),
                    k.live(session), k.deadletter, k.control(role), *(k.ready(r) for r in roles),
                    *(k.control(r) for r in roles))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[cache_key] = keys
        return self._lua.claim.queue(pipe, keys, (role, session, BELL_MAX, max(1, int(want)), *roles))

    def _hints_call(self, pipe) -> Queued:
        roles = list(self.roles)
        k = self.keys
        return self._lua.hints.queue(pipe, [*(k.ready(r) for r in roles), *(k.control(r) for r in roles)], roles)

    def step(self, finish: Finish | Sequence[Finish] | None = None, *, claim: bool = True,
             want: int = 1) -> StepResult:
        """Report ``finish`` (one report or several, if any) and claim up to ``want`` tasks of the
        next queue, in one round trip.

        Each report is its own atomic step (``finish.lua``) and so is the claim (``claim.lua``);
        they travel together. With ``claim=False`` (a worker that is stopping) only the reports
        are sent. Claimed tasks are in this worker's in-flight list, in the order they are to run.
        """
        if not self._loaded:
            ensure_loaded(self.client)
            self._loaded = True
        finishes: Sequence[Finish]
        if finish is None:
            finishes = ()
        elif isinstance(finish, Finish):
            finishes = (finish,)
        else:
            finishes = finish
        pipe = self.client.pipeline(transaction=False)
        calls = self._finish_calls(pipe, finishes)
        queued: list[Queued] = [q for q, _ in calls]
        claiming = False
        serving = bool(self.roles) and claim
        hint = self.hint
        if serving:
            if hint is not None and hint[0] in self.roles:
                queued.append(self._claim_call(pipe, hint[0], hint[1], want))
                claiming = True
            else:
                queued.append(self._hints_call(pipe))
        if not queued:
            return StepResult(wait_s=self.idle_wait_s)
        replies = execute(self.client, pipe, queued)
        outcomes = tuple(o for reply in replies[:len(calls)] for o in reply)
        finished = outcomes[-1] if outcomes else None
        if not serving:
            return StepResult(finished=finished, wait_s=self.idle_wait_s, outcomes=outcomes)
        reply = replies[-1]
        hint_role, hint_session, hint_score, now = reply[0], reply[1], reply[2], reply[3]
        batch: tuple[Claimed, ...] = ()
        if claiming and len(reply) > 5:
            role, session = hint[0], hint[1]
            again = bool(reply[4])
            batch = tuple(self._decode(raw, role, session, again=again) for raw in reply[5:])
        now_us = int(now)
        if hint_role:
            score = int(float(hint_score))
            self.hint = (hint_role, hint_session, score)
            eligible = score <= now_us
            wait = 0.0 if eligible else min(self.idle_wait_s, max(0.01, (score - now_us) / 1_000_000))
        else:
            self.hint, eligible, wait = None, False, self.idle_wait_s
        return StepResult(finished=finished, claimed=batch[0] if batch else None, wait_s=wait, eligible=eligible,
                          batch=batch, outcomes=outcomes)

    @staticmethod
    def _decode(raw: str, role: str, session: str, again: bool = False) -> Claimed:
        try:
            task = decode_task(raw)
        except InvalidMessage as exc:
            return Claimed(raw=raw, role=role, session=session, invalid=str(exc))
        if again:  # delivered again (its first claim reply was lost): it came from its own queue
            log.warning("task %s was claimed but the reply was lost; running it now", printable(raw, 300))
            role, session = task.stage, task.session
        if task.stage != role or task.session != session:
            return Claimed(raw=raw, role=role, session=session,
                           invalid=f"message for {task.stage}:{task.session} found in queue {role}:{session}")
        return Claimed(raw=raw, role=role, session=session, task=task)

    def wait_for_work(self, timeout: float) -> bool:
        """Block on the roles' bells for up to ``timeout`` seconds; True if woken by a bell.

        A bell's token names the session whose queue got work: the next :meth:`step` claims from
        that queue directly (one round trip from the wake-up to a running task, instead of asking
        where work is first). The claim's own hint then restores least-recently-served order."""
        if not self.roles or timeout <= 0:
            return False
        bells = self._cache.get(("bells", tuple(self.roles)))
        if bells is None:
            bells = self._cache[("bells", tuple(self.roles))] = {self.keys.bell(r): r for r in self.roles}
        reply = self.client.blpop(list(bells), timeout=max(0.01, timeout))
        if reply is None:
            return False
        key, token = reply
        role = bells.get(key if isinstance(key, str) else key.decode())
        if role is not None and token and token != "1":
            self.hint = (role, token if isinstance(token, str) else token.decode(), 0)
        return True

    # --- heartbeat --------------------------------------------------------------------------
    def beat(self, hb_s: float, lease_s: float, info: dict[str, Any]) -> Beat:
        k = self.keys
        flat: list[Any] = []
        for name, value in info.items():
            flat.extend((name, "" if value is None else value))
        ttl_ms = int(max(60.0, lease_s * 4) * 1000)
        reply = self._lua.heartbeat(self.client, (k.workers, k.worker(self.worker_id), k.clock, k.grace, k.epoch),
                                    (self.worker_id, int(hb_s * 1000), int(lease_s * 1000), ttl_ms, *flat))
        now, known, epoch, grace, earliest, *lapsed = reply
        return Beat(now_ms=int(now), known=bool(int(known)), epoch=str(epoch), grace_ms=int(grace),
                    earliest_expiry_ms=int(float(earliest)) if earliest else None,
                    lapsed=tuple(w for w in lapsed if w != self.worker_id))

    def retire(self) -> bool:
        """Leave the registry after a clean stop (only if nothing is in flight)."""
        k = self.keys
        return bool(self._lua.forget(self.client, (k.workers, k.worker(self.worker_id), k.inflight(self.worker_id),
                                                   k.events, k.grace, k.clock),
                                     (self.worker_id, "1", 2000, "", "")))

    def in_flight(self) -> list[str]:
        return self.client.lrange(self.keys.inflight(self.worker_id), 0, -1)


def default_worker_id(name: str | None, index: int | None = None, pid: int | None = None) -> str:
    import os
    import uuid

    host = socket.gethostname().split(".")[0] or "host"
    base = name or host
    pid = os.getpid() if pid is None else pid
    suffix = uuid.uuid4().hex[:6]
    index_part = f"-{index}" if index is not None else ""
    return f"{base}{index_part}-{pid}-{suffix}"
