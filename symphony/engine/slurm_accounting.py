"""SLURM job accounting in Redis: which SLURM jobs run Symphony's workers, and what became of them.

Jobs are recorded under a *tag* (by default the pool they serve), as ``symphony slurm submit``
does when it submits them. Every job id is in ``symphony:slurm:<tag>:ALL`` and in exactly one
state set, ``symphony:slurm:<tag>:<STATE>``: ``PENDING_AND_RUNNING`` until SLURM says it ended,
then ``COMPLETED``, ``FAILED``, ``TIMEOUT``, ``CANCELLED``, ``OUT_OF_MEMORY``, ``NODE_FAIL``,
``PREEMPTED``, or ``UNKNOWN`` (SLURM forgot it before anyone saw it end). Each move is one
atomic step (``lua/slurm.lua``), fenced by the tracker's lock so a tracker that lost its lock
(paused, partitioned) can never move a job back to an older state. Talking to SLURM is the job
of ``symphony.slurm``; this module only stores what it saw.

Bounds: each finished set keeps the newest ``retain`` jobs (10,000 by default); every key of a
tag expires 30 days after its last write (each tracker poll writes).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import redis

from symphony.spec import check_name

from .keys import Keys
from .scripts import scripts

RETAIN = 10_000  # finished jobs kept per state set and tag
TTL_S = 30 * 24 * 3600  # a tag's keys expire this long after their last write
ALL = "ALL"
MOVE_CHUNK = 1000  # observations per Lua call (keeps each atomic step to a few milliseconds)


class JobSet(str, Enum):
    """The state sets a recorded SLURM job moves between (every recorded job is also in the set ALL)."""

    PENDING_AND_RUNNING = "PENDING_AND_RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"  # SLURM no longer knows the job and there is no accounting to ask

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self is not JobSet.PENDING_AND_RUNNING


SETS: tuple[JobSet, ...] = tuple(JobSet)
FINISHED: tuple[JobSet, ...] = tuple(s for s in JobSet if s.finished)


def slurm_origin(cluster: str, job_id: str) -> str:
    """The origin (``Engine(origin=...)``) under which the tasks a SLURM job ran list their
    key/values: ``slurm-<cluster>-<job id as tracked>``."""
    return f"slurm-{cluster}-{job_id}" if cluster else f"slurm-{job_id}"


class LockLost(Exception):
    """The tracker's lock is no longer ours (it expired and another tracker took over)."""


@dataclass(frozen=True)
class SlurmJob:
    """One recorded SLURM job, as the last observation left it."""

    id: str  # as tracked: "1234" or, for an array task, "1234_0"
    tag: str
    set: JobSet
    state: str = ""  # SLURM's own state word (PENDING, RUNNING, COMPLETED, ...)
    reason: str = ""  # SLURM's reason (e.g. NonZeroExitCode, JobLaunchFailure, Priority)
    exit_code: str = ""  # "exit:signal", as scontrol shows it
    node: str = ""
    pool: str = ""
    job_id: str = ""  # SLURM's unique numeric id (an array task has its own)
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    entered: float | None = None  # when it entered its current set (server time)
    note: str = ""

    @classmethod
    def from_record(cls, tag: str, job_id: str, raw: str | None) -> "SlurmJob":
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        try:
            job_set = JobSet(data.get("set", JobSet.PENDING_AND_RUNNING.value))
        except ValueError:
            job_set = JobSet.UNKNOWN

        def seconds(name: str, scale: float = 1.0) -> float | None:
            value = data.get(name)
            return float(value) / scale if isinstance(value, (int, float)) and value else None

        return cls(id=job_id, tag=tag, set=job_set, state=str(data.get("state", "")), reason=str(data.get("reason", "")),
                   exit_code=str(data.get("exit", "")), node=str(data.get("node", "")), pool=str(data.get("pool", "")),
                   job_id=str(data.get("job_id", "")), submitted=seconds("submitted"), started=seconds("started"),
                   ended=seconds("ended"), entered=seconds("entered", 1000.0), note=str(data.get("note", "")))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tag": self.tag, "set": self.set.value, "state": self.state, "reason": self.reason,
                "exit_code": self.exit_code, "node": self.node, "pool": self.pool, "job_id": self.job_id,
                "submitted": self.submitted, "started": self.started, "ended": self.ended, "entered": self.entered,
                "note": self.note}


@dataclass(frozen=True)
class SlurmTag:
    """The summary of one tag: its pool and cluster, and how many jobs are in each set."""

    tag: str
    pool: str = ""
    cluster: str = ""
    created: float | None = None
    updated: float | None = None
    polled: float | None = None  # when a tracker last looked at SLURM for it
    pending: int = 0  # of the jobs in PENDING_AND_RUNNING, as SLURM last said (plus those submitted since)
    running: int = 0
    all: int = 0
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def live(self) -> int:
        return int(self.counts.get(JobSet.PENDING_AND_RUNNING.value, 0))

    @property
    def finished(self) -> int:
        return sum(int(self.counts.get(s.value, 0)) for s in FINISHED)

    @classmethod
    def from_summary(cls, tag: str, raw: str) -> "SlurmTag":
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}

        def ms(name: str) -> float | None:
            value = data.get(name)
            return float(value) / 1000 if isinstance(value, (int, float)) and value else None

        return cls(tag=tag, pool=str(data.get("pool", "")), cluster=str(data.get("cluster", "")), created=ms("created"),
                   updated=ms("updated"), polled=ms("polled"), pending=int(data.get("pending", 0) or 0),
                   running=int(data.get("running", 0) or 0), all=int(data.get("all", 0) or 0),
                   counts=MappingProxyType({str(k): int(v) for k, v in counts.items()}))

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "pool": self.pool, "cluster": self.cluster, "created": self.created,
                "updated": self.updated, "polled": self.polled, "pending": self.pending, "running": self.running,
                "finished": self.finished, "all": self.all, "counts": {s.value: int(self.counts.get(s.value, 0))
                                                                       for s in SETS}}


@dataclass(frozen=True)
class Observation:
    """What a tracker saw of one job: the set it belongs in and SLURM's details."""

    id: str
    set: JobSet
    state: str = ""
    reason: str = ""
    exit_code: str = ""
    node: str = ""
    job_id: str = ""
    started: float | None = None
    ended: float | None = None
    note: str = ""

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "reason": self.reason, "exit": self.exit_code, "node": self.node}
        for name in ("job_id", "started", "ended", "note"):
            value = getattr(self, name)
            if value not in (None, ""):
                out[name] = value
        return out


@dataclass(frozen=True)
class CleanupResult:
    tag: str
    done: bool
    jobs: int  # forgotten, or (when refused) still pending or running


class SlurmAccounting:
    """The Redis side of SLURM job accounting (``Engine.slurm``)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retain: int = RETAIN, ttl_s: int = TTL_S):
        self.client, self.keys, self.retain, self.ttl_s = client, keys, retain, ttl_s

    def _keys(self, tag: str, lock: str = "tracker") -> list[str]:
        check_name(tag, "tag")
        k = self.keys
        return [k.slurm_tags, k.slurm_jobs(tag), k.slurm_set(tag, ALL), k.slurm_lock(lock),
                *(k.slurm_set(tag, s.value) for s in SETS)]

    def _call(self, op: str, tag: str, args: Sequence[Any], lock: str = "tracker") -> Any:
        head = [op, len(SETS), *(s.value for s in SETS), tag, self.ttl_s * 1000, self.retain]
        return scripts().slurm(self.client, self._keys(tag, lock), [*head, *args])

    # --- writing ----------------------------------------------------------------------------
    def record(self, tag: str, jobs: Iterable[tuple[str, Mapping[str, Any]]], *, pool: str = "",
               cluster: str = "") -> int:
        """Record submitted jobs under ``tag`` (in ALL and PENDING_AND_RUNNING); ids already
        recorded are left as they are. Returns how many were new."""
        args: list[Any] = [pool, cluster]
        for job_id, record in jobs:
            args += [str(job_id), json.dumps(dict(record), separators=(",", ":"))]
        return int(self._call("record", tag, args))

    def move(self, tag: str, observations: Sequence[Observation], *, token: str = "", pending: int = 0,
             running: int = 0, lock: str = "tracker") -> tuple[int, int]:
        """Put each observed job in its set (atomically) and store SLURM's details; ``pending``
        and ``running`` are the tag's live jobs as SLURM reported them. With ``token``, nothing
        changes unless the lock ``lock`` is still held with it (raises :class:`LockLost`).
        Returns (jobs that changed set, jobs updated)."""
        moved = updated = 0
        for start in range(0, max(1, len(observations)), MOVE_CHUNK):  # each call short, each move atomic
            args: list[Any] = [token, int(pending), int(running)]
            for obs in observations[start:start + MOVE_CHUNK]:
                args += [obs.id, obs.set.value, json.dumps(obs.record(), separators=(",", ":"))]
            reply = self._call("move", tag, args, lock)
            if int(reply[0]) < 0:
                raise LockLost(f"the lock {self.keys.slurm_lock(lock)} is held by another process")
            moved, updated = moved + int(reply[0]), updated + int(reply[1])
        return moved, updated

    def cleanup(self, tag: str, *, force: bool = False) -> CleanupResult:
        """Forget every job recorded under ``tag`` (cleanup of finished work); refused while jobs are
        pending or running unless ``force`` (they would no longer be tracked)."""
        done, n = self._call("cleanup", tag, ["1" if force else "0"])
        return CleanupResult(tag=tag, done=bool(int(done)), jobs=int(n))

    # --- reading ----------------------------------------------------------------------------
    def tags(self) -> tuple[SlurmTag, ...]:
        raw = self.client.hgetall(self.keys.slurm_tags)
        return tuple(SlurmTag.from_summary(t, v) for t, v in sorted(raw.items()))

    def tag(self, tag: str) -> SlurmTag | None:
        raw = self.client.hget(self.keys.slurm_tags, tag)
        return SlurmTag.from_summary(tag, raw) if raw else None

    def live(self, tags: Sequence[str]) -> dict[str, list[str]]:
        """The ids in PENDING_AND_RUNNING of each tag (one round trip)."""
        with self.client.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.zrange(self.keys.slurm_set(tag, JobSet.PENDING_AND_RUNNING.value), 0, -1)
            replies = pipe.execute()
        return {tag: list(ids) for tag, ids in zip(tags, replies)}

    def jobs(self, tag: str, ids: Sequence[str] | None = None, *, limit: int = 100) -> tuple[SlurmJob, ...]:
        """Recorded jobs of ``tag``: the given ids, or the newest ``limit`` submitted."""
        if ids is None:
            ids = self.client.zrevrange(self.keys.slurm_set(tag, ALL), 0, max(0, limit - 1))
        if not ids:
            return ()
        records = self.client.hmget(self.keys.slurm_jobs(tag), list(ids))
        return tuple(SlurmJob.from_record(tag, i, raw) for i, raw in zip(ids, records))

    def membership(self, tag: str) -> dict[str, set[str]]:
        """Every set of ``tag`` (ALL and each state set) and its ids, read in one round trip."""
        names = [ALL, *(s.value for s in SETS)]
        with self.client.pipeline(transaction=True) as pipe:  # MULTI: one consistent view
            for name in names:
                pipe.zrange(self.keys.slurm_set(tag, name), 0, -1)
            replies = pipe.execute()
        return {name: set(ids) for name, ids in zip(names, replies)}

    def find(self, job_id: str) -> SlurmJob | None:
        """The recorded job with this id (as tracked, "1234_0", or SLURM's numeric id), in any tag."""
        tags = [t.tag for t in self.tags()]
        if not tags:
            return None
        with self.client.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.hget(self.keys.slurm_jobs(tag), job_id)
            replies = pipe.execute()
        for tag, raw in zip(tags, replies):
            if raw:
                return SlurmJob.from_record(tag, job_id, raw)
        for tag in tags:  # SLURM's numeric id of an array task: look through the records
            for job in self.jobs(tag, limit=RETAIN):
                if job.job_id == job_id:
                    return job
        return None

    # --- locks ------------------------------------------------------------------------------
    def lock(self, what: str, ttl_s: float) -> "Lease":
        """A lock only one process holds at a time (the tracker of a cluster, the adapter of a tag)."""
        return Lease(self.client, self.keys.slurm_lock(what), ttl_s)


class Lease:
    """A lock with a TTL and a random token (redis-py's ``Lock``: renewing and releasing check the
    token atomically). The token fences the tracker's moves: see :meth:`SlurmAccounting.move`."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float):
        from redis.lock import Lock

        self.client, self.key = client, key
        self._lock = Lock(client, key, timeout=max(1.0, ttl_s), blocking=False, thread_local=False)
        self.token = ""

    @property
    def held(self) -> bool:
        return bool(self.token)

    def acquire(self, holder: str = "") -> bool:
        """Take the lock, or renew it if it is still ours; False if another process holds it."""
        from redis.exceptions import LockError

        if self.token:
            try:
                self._lock.reacquire()
                return True
            except LockError:  # expired, and perhaps taken by another process meanwhile
                self.token = ""
        token = f"{uuid.uuid4().hex}|{holder}"
        if self._lock.acquire(blocking=False, token=token):
            self.token = token
            return True
        return False

    def holder(self) -> str:
        """Who holds the lock now (as its holder described itself), or '' if nobody does."""
        value = self.client.get(self.key) or ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value.partition("|")[2] or ("another process" if value else "")

    def release(self) -> None:
        from redis.exceptions import LockError

        if self.token:
            try:
                self._lock.release()
            except LockError:
                pass
        self.token = ""


__all__ = ["slurm_origin", "ALL", "CleanupResult", "FINISHED", "JobSet", "Lease", "LockLost", "Observation", "SETS", "SlurmAccounting",
           "SlurmJob", "SlurmTag"]
