"""The worker's side of the queue: claim, finish, wait and heartbeat.

Claiming a task is one atomic step that moves it from its queue into this worker's in-flight
list; the lease on it lasts as long as the worker keeps beating. Finishing a task and
claiming the next one travel in one round trip. Idle workers block on their roles' bells
instead of polling.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import redis

from .keys import Keys
from .messages import InvalidMessage, Task, decode_task, dumps
from .scripts import Queued, execute, load_all, scripts

RESULTS_MAXLEN = 10_000
BELL_MAX = 64
MAX_ERROR = 2_000
MAX_STDERR = 4_000

DONE, RETRY, HANDBACK, FAILED, TIMED_OUT, CANCELLED = "done", "retry", "handback", "failed", "timed_out", "cancelled"


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

    kind: str  # done | retry | handback | failed | timed_out | cancelled
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


@dataclass(frozen=True)
class StepResult:
    finished: str | None = None  # None (nothing finished), 'lost', or the recorded outcome
    claimed: Claimed | None = None
    wait_s: float = 0.0  # how long to block on bells when nothing was claimed
    eligible: bool = False  # another claim may succeed right away


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

    # --- claim and finish -------------------------------------------------------------------
    def _finish_call(self, pipe, fin: Finish) -> Queued:
        k, c = self.keys, fin.claimed
        out = fin.outcome
        kind = out.kind
        stage, session, item = c.role, c.session, c.item
        next_stage = fin.next_stage or ""
        target = ready = bell = ""
        message = ""
        if kind == DONE and next_stage:
            target, ready, bell = k.queue(next_stage, session), k.ready(next_stage), k.bell(next_stage)
            message = c.task.at_stage(next_stage).encode() if c.task else ""
        elif kind == RETRY:
            target, ready, bell = k.delayed(stage, session), k.ready(stage), k.bell(stage)
            message = c.task.next_attempt().encode() if c.task else c.raw
        elif kind == HANDBACK:
            target, ready, bell = k.queue(stage, session), k.ready(stage), k.bell(stage)
            message = c.raw
        else:  # the target keys are unused, but must still be real keys of this session's stage
            target, ready, bell = k.queue(stage, session), k.ready(stage), k.bell(stage)
        record = ""
        if kind in (FAILED, TIMED_OUT, CANCELLED):
            record = dumps({"state": kind, "stage": stage, "error": out.error[:MAX_ERROR],
                            "stderr": out.stderr[-MAX_STDERR:], "attempts": fin.attempts,
                            "worker": self.worker_id, "at": round(time.time(), 3), "task": c.raw[:4000]})
        keys = (k.inflight(self.worker_id), k.worker(self.worker_id), k.stats(session), k.live(session),
                k.outcomes(session), k.session(session), k.results, target, ready, bell)
        args = (c.raw, kind, stage, session, item, next_stage, message, int(out.delay_s * 1000), record,
                self.results_maxlen, BELL_MAX, out.duration_ms, fin.attempts, self.worker_id,
                out.error.strip().splitlines()[-1][:200] if out.error.strip() else "")
        return self._lua.finish.queue(pipe, keys, args)

    def _claim_call(self, pipe, role: str, session: str) -> Queued:
        k = self.keys
        roles = list(self.roles)
        keys = [k.inflight(self.worker_id), k.worker(self.worker_id), k.queue(role, session),
                k.delayed(role, session), k.ready(role), k.stats(session), k.session(session), k.bell(role)]
        keys.extend(k.ready(r) for r in roles)
        args = [role, session, BELL_MAX, *roles]
        return self._lua.claim.queue(pipe, keys, args)

    def _hints_call(self, pipe) -> Queued:
        roles = list(self.roles)
        return self._lua.hints.queue(pipe, [self.keys.ready(r) for r in roles], roles)

    def step(self, finish: Finish | None = None, *, claim: bool = True) -> StepResult:
        """Report ``finish`` (if any) and claim the next task, in one round trip.

        With ``claim=False`` (a worker that is stopping) only the report is sent.
        """
        if not self._loaded:
            load_all(self.client)
            self._loaded = True
        pipe = self.client.pipeline(transaction=False)
        queued: list[Queued] = []
        if finish is not None:
            queued.append(self._finish_call(pipe, finish))
        claiming = False
        serving = bool(self.roles) and claim
        if serving:
            hint = self.hint
            if hint is not None and hint[0] in self.roles:
                queued.append(self._claim_call(pipe, hint[0], hint[1]))
                claiming = True
            else:
                queued.append(self._hints_call(pipe))
        if not queued:
            return StepResult(wait_s=self.idle_wait_s)
        replies = execute(self.client, pipe, queued)
        finished = None
        if finish is not None:
            reply = replies[0]
            finished = "lost" if reply[0] == "lost" else reply[1]
        if not serving:
            return StepResult(finished=finished, wait_s=self.idle_wait_s)
        reply = replies[-1]
        claimed = None
        if claiming:
            raw, hint_role, hint_session, hint_score, now = reply
            if raw:
                claimed = self._decode(raw, self.hint[0], self.hint[1])
        else:
            hint_role, hint_session, hint_score, now = reply
        now_us = int(now)
        if hint_role:
            score = int(float(hint_score))
            self.hint = (hint_role, hint_session, score)
            eligible = score <= now_us
            wait = 0.0 if eligible else min(self.idle_wait_s, max(0.01, (score - now_us) / 1_000_000))
        else:
            self.hint, eligible, wait = None, False, self.idle_wait_s
        return StepResult(finished=finished, claimed=claimed, wait_s=wait, eligible=eligible)

    @staticmethod
    def _decode(raw: str, role: str, session: str) -> Claimed:
        try:
            task = decode_task(raw)
        except InvalidMessage as exc:
            return Claimed(raw=raw, role=role, session=session, invalid=str(exc))
        if task.stage != role or task.session != session:
            return Claimed(raw=raw, role=role, session=session,
                           invalid=f"message for {task.stage}:{task.session} found in queue {role}:{session}")
        return Claimed(raw=raw, role=role, session=session, task=task)

    def wait_for_work(self, timeout: float) -> bool:
        """Block on the roles' bells for up to ``timeout`` seconds; True if woken by a bell."""
        if not self.roles or timeout <= 0:
            return False
        reply = self.client.blpop([self.keys.bell(r) for r in self.roles], timeout=max(0.01, timeout))
        return reply is not None

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
                                                   k.events, k.grace),
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
