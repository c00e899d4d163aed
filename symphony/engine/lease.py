"""The worker's side of the queue: claim, finish, wait and heartbeat.

Claiming a task is one atomic step that moves it from its queue into this worker's in-flight
list; the lease on it lasts as long as the worker keeps beating. Finishing a task and
claiming the next one travel in one round trip. Idle workers block on their roles' bells
instead of polling.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Sequence

import redis

from .keys import Keys
from .cluster import is_cluster
from .messages import InvalidMessage, Task, decode_task, printable
from .outcomes import OutcomeKind
from .fleet import FleetOps, run
from .reports import BELL_MAX, FINISH_GROUP_MAX, ReportGroup, amend, report_calls
from .scripts import Queued, ensure_loaded, scripts

log = logging.getLogger("symphony.lease")
RESULTS_MAXLEN = 10_000


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
    """One worker process's connection to the queues.

    Each step is session-slot scripts (``finish.lua`` per report group, ``claim.lua``) plus one
    fleet-slot ``fleet.lua`` call for what follows from them (symphony/engine/fleet.py), in one
    round trip on a single server. A stage with fleet-wide limits takes its permits in a fleet
    step before the claim (one more round trip, for limited stages only)."""

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
    _seen: str | None = field(default=None, repr=False)  # the hint's version ('' none; None: not read)
    _indexed: set = field(default_factory=set, repr=False)  # sessions in our holds index
    _limited: dict = field(default_factory=dict, repr=False)  # role -> it has fleet-wide limits
    _permitted: set = field(default_factory=set, repr=False)  # stages we ever took permits of
    _later: list = field(default_factory=list, repr=False)  # ready-set upkeep for the next fleet step
    _suspect: tuple[str, str] | None = field(default=None, repr=False)  # a claim sent, its reply never read

    def serve(self, roles: Sequence[str]) -> None:
        """Claim from ``roles`` from now on (the worker re-read the registry)."""
        if list(roles) != list(self.roles):
            self.roles = list(roles)
            self.hint = None

    # --- claim and finish -------------------------------------------------------------------
    def _finish_calls(self, pipe, finishes: Sequence[Finish], fleet: FleetOps) -> list[ReportGroup]:
        return report_calls(self, pipe, finishes, fleet)

    def _amend(self, groups: Sequence[ReportGroup], replies: Sequence[Any], fleet_reply: Sequence[Any]) -> None:
        amend(self, groups, replies, fleet_reply)

    def _session_keys(self, session: str) -> tuple[str, ...]:
        """The keys every report of ``session`` touches (built once: this is the hot path)."""
        got = self._cache.get(session)
        if got is None:
            k = self.keys
            got = (k.inflight(session, self.worker_id), k.stats(session), k.live(session), k.outcomes(session),
                   k.session(session))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[session] = got
        return got

    def _claim_call(self, pipe, role: str, session: str, want: int = 1) -> Queued:
        cache_key = (role, session)
        keys = self._cache.get(cache_key)
        if keys is None:
            k = self.keys
            keys = (k.inflight(session, self.worker_id), k.queue(role, session), k.delayed(role, session),
                    k.stats(session), k.session(session), k.live(session), k.deadletter(session), k.holders(session))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[cache_key] = keys
        return self._lua.claim.queue(pipe, keys, (role, session, max(1, int(want)), self.worker_id))

    def _index(self, pipe, session: str) -> list[None]:
        """Name ``session`` in this worker's holds index before its first claim there (the reaper
        finds our in-flight lists through it): first on the claim's pipeline on a single server
        (it runs in order), in a round trip of its own before the claim on a cluster."""
        if session in self._indexed:
            return []
        if is_cluster(self.client):
            self.client.sadd(self.keys.holds(self.worker_id), session)
            self._indexed.add(session)
            return []
        pipe.sadd(self.keys.holds(self.worker_id), session)
        return [None]

    def _upkeep(self, fleet: FleetOps) -> None:
        """The ready-set upkeep left from the last claims (a queue found empty, paused or later)."""
        k = self.keys
        for op, role, session, seen, score in self._later:
            if op == "drop":
                fleet.drop(k, role, session, seen)
            else:
                fleet.later(k, role, session, seen, score)
        self._later.clear()

    def _target(self, serving: bool) -> tuple[str, str] | None:
        """The queue to claim from: one whose claim reply was lost first (its tasks are delivered
        again), else the hint."""
        if not serving:
            return None
        if self._suspect is not None and self._suspect[0] in self.roles:
            return self._suspect
        hint = self.hint
        if hint is not None and hint[0] in self.roles:
            return hint[0], hint[1]
        return None

    def step(self, finish: Finish | Sequence[Finish] | None = None, *, claim: bool = True,
             want: int = 1) -> StepResult:
        """Report ``finish`` (one report or several, if any) and claim up to ``want`` tasks of the
        next queue, in one round trip.

        Each report is its own atomic step (``finish.lua``) and so is the claim (``claim.lua``);
        they travel together, with their fleet side (``fleet.lua``). With ``claim=False`` (a
        worker that is stopping) only the reports are sent. Claimed tasks are in this worker's
        in-flight list, in the order they are to run.
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
        serving = bool(self.roles) and claim
        target = self._target(serving)
        if not finishes and not serving:
            return StepResult(wait_s=self.idle_wait_s)
        want = max(1, int(want))
        limited = target is not None and self._limited.get(target[0], True) and target != self._suspect
        fleet = FleetOps()
        self._upkeep(fleet)
        groups: list[ReportGroup] = []

        def reports(pipe):
            groups.extend(self._finish_calls(pipe, finishes, fleet))
            return [g.queued for g in groups]

        if not serving:
            fleet.worker(self.keys, self.worker_id, {"current": "", "state": "idle"})
            replies, fleet_reply = run(self.client, reports, fleet)
            self._amend(groups, replies, fleet_reply)
            return StepResult(finished=self._last(replies), wait_s=self.idle_wait_s, outcomes=self._flat(replies))
        if limited:
            return self._limited_step(target, want, fleet, reports, groups)
        hints = claimed = None
        if target is not None:
            fleet.bump(self.keys, target[0], target[1])
            claimed = True
        hints = fleet.hints(self.keys, self.roles, limits=self._unknown())

        indexed: list[None] = []

        def calls(pipe):
            if claimed:
                indexed.extend(self._index(pipe, target[1]))
            out = [*indexed, *reports(pipe)]
            if claimed:
                self._suspect = target
                out.append(self._claim_call(pipe, target[0], target[1], want))
            return out

        replies, fleet_reply = run(self.client, calls, fleet)
        replies = replies[len(indexed):]
        if claimed:
            self._indexed.add(target[1])
        self._suspect = None
        self._amend(groups, replies, fleet_reply)
        outcomes = self._flat(replies[:len(groups)])
        batch = self._claimed(target, replies[-1]) if claimed else ()
        return self._result(fleet_reply[hints], batch, outcomes, target if claimed and not batch else None)

    def _limited_step(self, target, want, fleet, reports, groups) -> StepResult:
        """Claim from a stage that may have fleet-wide limits: its permits first (a fleet step,
        with the reports), then the claim of as many as were granted, then the unused ones back."""
        k = self.keys
        role, session = target
        self._permitted.add(role)
        permit = fleet.acquire(k, role, want, self.worker_id)
        hints = fleet.hints(k, self.roles, limits=self._unknown())
        replies, fleet_reply = run(self.client, reports, fleet)
        self._amend(groups, replies, fleet_reply)
        outcomes = self._flat(replies)
        granted, opens = int(fleet_reply[permit][0]), int(fleet_reply[permit][1])
        self._note_limits(fleet_reply[hints])
        if not self._limited.get(role, True):  # no limits after all: the permits count nothing
            self._permitted.discard(role)
        if granted <= 0:
            reply = list(fleet_reply[hints])
            if reply[0] == role and reply[1] == session:
                reply[2] = str(max(int(float(reply[2])), opens * 1000))
            return self._result(reply, (), outcomes, None)
        after = FleetOps()
        after.bump(k, role, session)
        hints = after.hints(k, self.roles, limits=self._unknown())
        self._suspect = target
        replies, after_reply = run(self.client, lambda pipe: [*self._index(pipe, session),
                                                              self._claim_call(pipe, role, session, granted)], after)
        self._indexed.add(session)
        self._suspect = None
        batch = self._claimed(target, replies[-1])
        unused = granted - len(batch)
        if unused > 0 and role in self._permitted:
            back = FleetOps()
            back.release(k, role, unused, self.worker_id, refund=True)
            back.call(self.client)
        return self._result(after_reply[hints], batch, outcomes, target if not batch else None)

    def _unknown(self) -> bool:
        """Is it unknown for some role whether it has fleet-wide limits (ask for all, then)?"""
        return any(role not in self._limited for role in self.roles)

    def _note_limits(self, hints_reply) -> None:
        flags = str(hints_reply[5]) if len(hints_reply) > 5 else ""
        for role, flag in zip(self.roles, flags):
            if flag != "-":
                self._limited[role] = flag == "1"

    def _claimed(self, target, reply) -> tuple[Claimed, ...]:
        """The tasks a claim delivered; what its queue's state asks of the ready set."""
        role, session = target
        state, again, later = reply[0], reply[3], reply[4]
        seen = self._seen if self.hint is not None and self.hint[:2] == (role, session) else None
        if seen is not None and state in ("empty", "paused", "stopped"):
            self._later.append(("drop", role, session, seen, 0))
        elif seen is not None and state == "later":
            self._later.append(("later", role, session, seen, int(float(later))))
        return tuple(self._decode(raw, role, session, again=bool(again)) for raw in reply[5:])

    @staticmethod
    def _flat(replies) -> tuple[str, ...]:
        return tuple(o for reply in replies for o in reply)

    def _last(self, replies):
        outcomes = self._flat(replies)
        return outcomes[-1] if outcomes else None

    def _result(self, hint_reply, batch: tuple[Claimed, ...], outcomes: tuple[str, ...],
                emptied: tuple[str, str] | None) -> StepResult:
        """The step's result from the fleet step's hint; a claim that found nothing first settles
        its queue's place in the ready set and asks again (one fleet step, off the busy path)."""
        if emptied is not None and self._later:
            fleet = FleetOps()
            self._upkeep(fleet)
            hints = fleet.hints(self.keys, self.roles, limits=self._unknown())
            hint_reply = fleet.call(self.client)[hints]
        self._note_limits(hint_reply)
        hint_role, hint_session, hint_score, now, version = (hint_reply[0], hint_reply[1], hint_reply[2],
                                                             hint_reply[3], hint_reply[4])
        finished = outcomes[-1] if outcomes else None
        now_us = int(now)
        if hint_role:
            score = int(float(hint_score))
            self.hint, self._seen = (hint_role, hint_session, score), str(version)
            eligible = score <= now_us
            wait = 0.0 if eligible else min(self.idle_wait_s, max(0.01, (score - now_us) / 1_000_000))
        else:
            self.hint, self._seen, eligible, wait = None, None, False, self.idle_wait_s
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
            self.hint, self._seen = (role, token if isinstance(token, str) else token.decode(), 0), None
        return True

    # --- heartbeat --------------------------------------------------------------------------
    def beat(self, hb_s: float, lease_s: float, info: dict[str, Any]) -> Beat:
        k = self.keys
        flat: list[Any] = []
        for name, value in info.items():
            flat.extend((name, "" if value is None else value))
        ttl_ms = int(max(60.0, lease_s * 4) * 1000)
        reply = self._lua.heartbeat(self.client, (k.workers, k.worker(self.worker_id), k.clock, k.grace, k.epoch,
                                                  k.sweep_lock),
                                    (self.worker_id, int(hb_s * 1000), int(lease_s * 1000), ttl_ms, *flat))
        now, known, epoch, grace, earliest, sweep, *lapsed = reply
        if not int(known) and self._indexed:  # forgotten (reclaimed, or Redis lost it): index what we may hold again
            self.client.sadd(k.holds(self.worker_id), *self._indexed)
        if sweep:
            self._sweep()
        return Beat(now_ms=int(now), known=bool(int(known)), epoch=str(epoch), grace_ms=int(grace),
                    earliest_expiry_ms=int(float(earliest)) if earliest else None,
                    lapsed=tuple(w for w in lapsed if w != self.worker_id))

    def _sweep(self) -> None:
        """This beat took the sweep's lock: name again every session with work in its ready sets."""
        from .sweep import sweep_ready

        try:
            sweep_ready(self.client, self.keys, BELL_MAX)
        except redis.RedisError as exc:  # the next sweep, 30 s on, by whichever worker beats first
            log.debug("the ready-set sweep failed: %s", exc)

    def sessions_held(self) -> list[str]:
        """The sessions this worker may hold tasks in (its holds index, and what it indexed)."""
        return sorted(set(self.client.smembers(self.keys.holds(self.worker_id))) | self._indexed)

    def retire(self) -> bool:
        """Leave the registry after a clean stop (only if nothing is in flight)."""
        from .reclaim import forget_worker

        return forget_worker(self.client, self.keys, self.worker_id, self.sessions_held(), force=True,
                             kind="", message="")

    def in_flight(self) -> list[str]:
        sessions = self.sessions_held()
        if not sessions:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for s in sessions:
                pipe.lrange(self.keys.inflight(s, self.worker_id), 0, -1)
            return [raw for entries in pipe.execute() for raw in entries]


def default_worker_id(name: str | None, index: int | None = None, pid: int | None = None) -> str:
    import os
    import uuid

    host = socket.gethostname().split(".")[0] or "host"
    base = name or host
    pid = os.getpid() if pid is None else pid
    suffix = uuid.uuid4().hex[:6]
    index_part = f"-{index}" if index is not None else ""
    return f"{base}{index_part}-{pid}-{suffix}"
