"""The status snapshot: queues, sessions, workers and recent events, immutable.

It is read in exactly two pipelined round trips however many queues and workers there are:
the first fetches the registry, the workers' leases, the recent events and the server time;
the second fetches every session's counters, every queue's length and every worker's
description. No ``KEYS``, no ``SCAN``. ``docs/status-json.md`` documents :meth:`Snapshot.to_dict`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .keys import Keys
from .messages import InvalidMessage, decode_task
from .redaction import redact
from .scripts import execute, scripts
from .slurm_accounting import SlurmTag

SCHEMA_VERSION = 1
READ_CHUNK = 1000  # keys per read.lua call
_NO_COUNTS: dict[str, int] = {}
STATES = ("running", "completed", "failed", "timed_out", "cancelled", "retried", "reclaimed", "enqueued", "delayed")


@dataclass(frozen=True)
class QueueStatus:
    role: str
    session: str
    queued: int = 0
    delayed: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    retried: int = 0
    reclaimed: int = 0
    enqueued: int = 0
    pool: str = ""

    @property
    def name(self) -> str:
        return f"{self.role}:{self.session}"


@dataclass(frozen=True)
class SessionStatus:
    name: str
    state: str
    pipeline: str
    stages: tuple[str, ...]
    items: int
    created: float
    file: str
    queued: int = 0
    in_flight: int = 0
    completed: int = 0  # items through the last stage
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0

    @property
    def progress(self) -> float:
        return (self.completed / self.items) if self.items else 0.0


@dataclass(frozen=True)
class WorkerStatus:
    id: str
    name: str
    host: str
    pid: int
    pool: str
    roles: tuple[str, ...]
    state: str  # busy | idle | stopping | stale | dead
    current: str  # "stage:item@session" or ""
    current_age_s: float | None
    heartbeat_age_s: float | None
    cpu_percent: float | None
    memory_percent: float | None
    host_cpu_percent: float | None = None
    host_memory_percent: float | None = None
    rss_bytes: int | None = None
    heartbeat_s: float | None = None
    started: float | None = None
    supervisor: str = ""
    completed: int = 0
    cpus: int | None = None  # logical CPUs of the host
    slurm_job_id: str = ""  # SLURM_JOB_ID of the SLURM job this worker runs in ("" outside SLURM)
    slurm_array_id: str = ""  # "<array job>_<task>" when that job is an array task
    job_end: float | None = None  # when the job's time limit ends (epoch seconds), if known


@dataclass(frozen=True)
class Event:
    id: str
    time: float
    kind: str  # completed | failed | timed_out | cancelled | session | worker_lost | ...
    session: str = ""
    stage: str = ""
    item: str = ""
    message: str = ""
    attempts: int | None = None
    duration_ms: int | None = None
    worker: str = ""


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # server time (seconds)
    redis: str  # the server, without any password
    queues: tuple[QueueStatus, ...] = ()
    sessions: tuple[SessionStatus, ...] = ()
    workers: tuple[WorkerStatus, ...] = ()
    events: tuple[Event, ...] = ()
    round_trips: int = 2
    used_memory: int | None = None
    grace_s: float = 0.0
    slurm: tuple[SlurmTag, ...] = ()  # SLURM jobs per tag (pool): pending, running, finished
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema": SCHEMA_VERSION,
            "taken_at": self.taken_at,
            "redis": redact(self.redis),
            "used_memory": self.used_memory,
            "grace_s": self.grace_s,
            "queues": [asdict(q) for q in self.queues],
            "sessions": [{**asdict(s), "stages": list(s.stages), "progress": round(s.progress, 4)} for s in self.sessions],
            "workers": [{**asdict(w), "roles": list(w.roles)} for w in self.workers],
            "events": [asdict(e) for e in self.events],
            "slurm": [t.to_dict() for t in self.slurm],
        }
        data.update(self.extra)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return redact(json.dumps(self.to_dict(), indent=indent, sort_keys=False))

    def queue(self, role: str, session: str) -> QueueStatus | None:
        for q in self.queues:
            if q.role == role and q.session == session:
                return q
        return None


def _num(value: Any, kind=float) -> Any:
    if value in (None, ""):
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def describe_current(raw: str) -> str:
    if not raw:
        return ""
    try:
        task = decode_task(raw)
    except InvalidMessage:
        return "(invalid message)"
    return f"{task.stage}:{task.item}@{task.session}"


def _event_from_result(entry_id: str, fields: dict[str, str]) -> Event:
    ms = int(entry_id.split("-")[0])
    return Event(id=entry_id, time=ms / 1000, kind=fields.get("st", "?"), session=fields.get("s", ""),
                 stage=fields.get("t", ""), item=fields.get("i", ""), message=redact(fields.get("e", "")),
                 attempts=_num(fields.get("a"), int), duration_ms=_num(fields.get("ms"), int),
                 worker=fields.get("w", ""))


def _event_from_system(entry_id: str, fields: dict[str, str]) -> Event:
    ms = int(entry_id.split("-")[0])
    return Event(id=entry_id, time=ms / 1000, kind=fields.get("kind", "event"), session=fields.get("session", ""),
                 stage=fields.get("stage", ""), item=fields.get("item", ""), message=redact(fields.get("msg", "")),
                 worker=fields.get("worker", ""))


def _read_by_script(client: redis.Redis, read_keys: list[str], ops: list[str]) -> list[Any]:
    """Read the keys with read.lua in chunks, as EVALSHA_RO: a read-only ACL user may run it."""
    lua = scripts().read
    out: list[Any] = []
    with client.pipeline(transaction=False) as pipe:
        queued = [lua.queue(pipe, read_keys[i:i + READ_CHUNK], ("".join(ops[i:i + READ_CHUNK]),), readonly=True)
                  for i in range(0, len(read_keys), READ_CHUNK)]
        for chunk in execute(client, pipe, queued):
            out.extend(chunk)
    return out


def _script_refused(exc: BaseException) -> bool:
    """Redis 6.2 has no EVALSHA_RO; a user may not be allowed scripts: read without one then."""
    text = str(exc).lower()
    return (isinstance(exc, redis.exceptions.NoPermissionError) or "noperm" in text or "no permissions" in text
            or "unknown command" in text)


def _read_plainly(client: redis.Redis, read_keys: list[str], ops: list[str]) -> list[Any]:
    """The same reads as read.lua, pipelined (HGETALL replies flattened like the script's)."""
    with client.pipeline(transaction=False) as pipe:
        for key, op in zip(read_keys, ops):
            if op == "l":
                pipe.llen(key)
            else:
                pipe.hgetall(key)
        replies = pipe.execute()
    return [r if isinstance(r, int) else [x for pair in r.items() for x in pair] for r in replies]


def read_snapshot(client: redis.Redis, keys: Keys, *, redis_display: str = "", events: int = 50) -> Snapshot:
    """Read the whole status in two round trips."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.sessions)
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        pipe.xrevrange(keys.results, count=max(1, events))
        pipe.xrevrange(keys.events, count=max(1, events))
        pipe.time()
        pipe.pttl(keys.grace)
        pipe.info("memory")
        pipe.hgetall(keys.slurm_tags)
        first = pipe.execute(raise_on_error=False)
    for reply in first[:6]:
        if isinstance(reply, Exception):
            raise reply
    sessions_raw, leases, results, system, server_time, grace_ms, memory, slurm_raw = first
    slurm = (tuple(SlurmTag.from_summary(t, v) for t, v in sorted(slurm_raw.items()))
             if isinstance(slurm_raw, dict) else ())
    now = server_time[0] + server_time[1] / 1_000_000
    used_memory = memory.get("used_memory") if isinstance(memory, dict) else None

    summaries = []
    for name, raw in sessions_raw.items():
        try:
            summaries.append((name, json.loads(raw)))
        except ValueError:
            continue
    summaries.sort(key=lambda s: s[0])
    worker_ids = [w for w, _ in leases]

    # the second round trip: every session's counters, every queue's length and every worker's
    # description, read by a read-only script in chunks (one reply per chunk instead of one per
    # key keeps the client's cost low; chunks keep each atomic read short for the server)
    read_keys: list[str] = []
    ops: list[str] = []
    for name, summary in summaries:
        read_keys.append(keys.stats(name))
        ops.append("h")
        for stage in summary.get("stages", ()):
            read_keys.append(keys.queue(stage, name))
            ops.append("l")
    for worker_id in worker_ids:
        read_keys.append(keys.worker(worker_id))
        ops.append("h")
    second: list[Any] = []
    if read_keys:
        try:
            second = _read_by_script(client, read_keys, ops)
        except redis.ResponseError as exc:
            if not _script_refused(exc):
                raise
            second = _read_plainly(client, read_keys, ops)

    queues: list[QueueStatus] = []
    sessions: list[SessionStatus] = []
    pos = 0
    for name, summary in summaries:
        flat = second[pos]
        pos += 1
        by_stage: dict[str, dict[str, int]] = {}
        for i in range(0, len(flat), 2):
            stage_name, _, metric = flat[i].partition("|")
            try:
                by_stage.setdefault(stage_name, {})[metric] = int(flat[i + 1])
            except ValueError:
                continue
        stages = tuple(summary.get("stages", ()))
        pools = summary.get("pools") or [""] * len(stages)
        totals = {"queued": 0, "in_flight": 0, "failed": 0, "timed_out": 0, "cancelled": 0}
        last_completed = 0
        for index, stage in enumerate(stages):
            queued_n = int(second[pos])
            pos += 1
            counts = by_stage.get(stage, _NO_COUNTS)
            get = counts.get
            q = QueueStatus(role=stage, session=name, queued=queued_n, delayed=max(0, get("delayed", 0)),
                            in_flight=max(0, get("running", 0)), completed=get("completed", 0),
                            failed=get("failed", 0), timed_out=get("timed_out", 0), cancelled=get("cancelled", 0),
                            retried=get("retried", 0), reclaimed=get("reclaimed", 0), enqueued=get("enqueued", 0),
                            pool=pools[index] if index < len(pools) else "")
            queues.append(q)
            totals["queued"] += q.queued + q.delayed
            totals["in_flight"] += q.in_flight
            totals["failed"] += q.failed
            totals["timed_out"] += q.timed_out
            totals["cancelled"] += q.cancelled
            last_completed = q.completed
        sessions.append(SessionStatus(name=name, state=summary.get("state", "?"), pipeline=summary.get("pipeline", "?"),
                                      stages=stages, items=int(summary.get("items", 0) or 0),
                                      created=float(summary.get("created", 0) or 0), file=summary.get("file", ""),
                                      completed=last_completed, **totals))

    workers: list[WorkerStatus] = []
    now_ms = now * 1000
    for (worker_id, expiry), flat in zip(leases, second[pos:]):
        it = iter(flat)
        workers.append(_worker_status(worker_id, expiry, dict(zip(it, it)), now_ms))

    events_list = [_event_from_result(i, f) for i, f in results] + [_event_from_system(i, f) for i, f in system]
    events_list.sort(key=lambda e: tuple(int(p) for p in e.id.split("-")), reverse=True)
    return Snapshot(taken_at=now, redis=redis_display, queues=tuple(queues), sessions=tuple(sessions),
                    workers=tuple(workers), events=tuple(events_list[:events]), used_memory=used_memory, slurm=slurm,
                    grace_s=max(0, grace_ms) / 1000 if isinstance(grace_ms, int) else 0.0)


def _worker_status(worker_id: str, expiry: float, info: dict[str, str], now_ms: float) -> WorkerStatus:
    beat = _num(info.get("beat"))
    hb_ms = _num(info.get("hb_ms")) or 5000.0
    age = (now_ms - beat) / 1000 if beat else None
    since = _num(info.get("since"))
    current_raw = info.get("current", "")
    state = info.get("state", "") or "unknown"
    if expiry <= now_ms:
        state = "dead"
    elif age is not None and age * 1000 > 1.5 * hb_ms:
        state = "stale"
    roles = tuple(r for r in info.get("roles", "").split(",") if r)
    return WorkerStatus(
        id=worker_id, name=info.get("name", worker_id), host=info.get("host", "?"), pid=_num(info.get("pid"), int) or 0,
        pool=info.get("pool", ""), roles=roles, state=state, current=describe_current(current_raw),
        current_age_s=(now_ms - since) / 1000 if (current_raw and since) else None,
        heartbeat_age_s=round(age, 3) if age is not None else None,
        cpu_percent=_num(info.get("cpu")), memory_percent=_num(info.get("mem")),
        host_cpu_percent=_num(info.get("host_cpu")), host_memory_percent=_num(info.get("host_mem")),
        rss_bytes=_num(info.get("rss"), int), heartbeat_s=hb_ms / 1000, started=_num(info.get("started")),
        supervisor=info.get("supervisor", ""), completed=_num(info.get("done"), int) or 0,
        cpus=_num(info.get("cpus"), int), slurm_job_id=info.get("slurm_job", ""),
        slurm_array_id=info.get("slurm_array", ""), job_end=_num(info.get("job_end")))


def work_remaining(client: redis.Redis, keys: Keys, roles: list[str] | tuple[str, ...]) -> int:
    """Tasks that a worker serving ``roles`` may still get: queued, retrying or running at its
    stages or any stage before them, over every active session. Burst workers exit at 0."""
    wanted = set(roles)
    sessions = []
    for name, raw in client.hgetall(keys.sessions).items():
        try:
            summary = json.loads(raw)
        except ValueError:
            continue
        stages = list(summary.get("stages", ()))
        if summary.get("state") != "active":
            continue
        indices = [i for i, s in enumerate(stages) if s in wanted]
        if indices:
            sessions.append((name, stages[: max(indices) + 1]))
    if not sessions:
        return 0
    with client.pipeline(transaction=False) as pipe:
        for name, stages in sessions:
            pipe.hgetall(keys.stats(name))
            for stage in stages:
                pipe.llen(keys.queue(stage, name))
        replies = pipe.execute()
    total, pos = 0, 0
    for name, stages in sessions:
        stats = replies[pos]
        pos += 1
        for stage in stages:
            total += int(replies[pos])
            pos += 1
            total += max(0, int(stats.get(f"{stage}|running", 0) or 0))
            total += max(0, int(stats.get(f"{stage}|delayed", 0) or 0))
    return total
