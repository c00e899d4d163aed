"""The status snapshot: queues, sessions, workers and recent events, immutable.

It is read in exactly two pipelined round trips however many queues and workers there are
(a console's paged read with an :class:`engine.fleet_view.FleetReader`: the same two, bounded
by the page shown, see fleet_view.py): the first fetches the registry, the workers' leases, the recent events, the server time and
the server's facts (``INFO``); the second fetches every session's counters, every queue's
length and every worker's description. No ``KEYS``, no ``SCAN``. ``docs/status-json.md``
documents :meth:`Snapshot.to_dict`.

length: a little over 500 lines: the snapshot's model and the reading and parsing of its two
round trips are one unit (each reply is parsed where its command is queued).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import redis

from .fleet_summary import FleetSummary, summarize
from .fleet_view import READ_CHUNK, slot_chunks  # noqa: F401 - READ_CHUNK: the snapshot's name for it, kept
from .keys import Keys
from .messages import InvalidMessage, decode_task
from .numbers import optional_number as _num
from .outcomes import SessionState
from .redaction import redact
from .registry import SessionSummary
from .scripts import execute, scripts
from .server import ServerInfo, from_replies, queue_reads
from .slurm_accounting import SlurmTag
from .drain import decode_drains
from .steering import StageControl, all_steering, decode_controls

SCHEMA_VERSION = 1
_NO_COUNTS: dict[str, int] = {}
STATES = ("running", "completed", "failed", "timed_out", "cancelled", "retried", "reclaimed", "enqueued", "delayed")


@dataclass(frozen=True)
class QueueStatus:
    role: str
    session: str
    queued: int = 0
    delayed: int = 0
    in_flight: int = 0
    completed: int = 0  # items done at this stage, each counted once (never more than the session's items)
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    retried: int = 0
    reclaimed: int = 0
    enqueued: int = 0
    pool: str = ""
    completions: int = 0  # every completion recorded at this stage, reruns and repeats included
    # every failure, timeout and cancellation ever recorded at this stage: the items now in that
    # state plus those that left it when they were enqueued again (never goes down)
    failures: int = 0
    timeouts: int = 0
    cancellations: int = 0
    dead_lettered: int = 0  # messages found in this queue that were no task (symphony:deadletter)
    # steering (docs/control.md): paused (the session or this stage), the session's priority, the
    paused: bool = False  # stage's fleet-wide limit in force, its running tasks over the fleet, its rate
    priority: int = 0
    max_running: int | None = None
    stage_running: int = 0
    rate: str = ""

    @property
    def name(self) -> str:
        return f"{self.role}:{self.session}"


@dataclass(frozen=True)
class SessionStatus:
    name: str
    state: SessionState | str  # ACTIVE, CANCELLED, or COMPLETE (every item through the last stage, nothing left)
    pipeline: str
    stages: tuple[str, ...]
    items: int
    created: float
    file: str
    queued: int = 0
    in_flight: int = 0
    completed: int = 0  # items through the last stage, each counted once
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    paused: bool = False  # the whole session (paused_stages: some of its stages)
    paused_stages: tuple[str, ...] = ()
    priority: int = 0

    @property
    def progress(self) -> float:
        return min(1.0, self.completed / self.items) if self.items else 0.0

    @property
    def advice(self) -> str:
        """What an operator may do with the session now, or "" while it simply runs."""
        name, stopped = self.name, self.failed + self.timed_out + self.cancelled
        if self.state == SessionState.COMPLETE:
            return (f"complete: every item is through every stage; keep it as a record, or "
                    f"'symphony purge {name}' frees its Redis keys (outputs on disk stay)")
        if self.state == SessionState.CANCELLED:
            return (f"cancelled: 'symphony initialize --resume' runs it again, "
                    f"'symphony purge {name}' forgets it (outputs on disk stay)")
        if self.state != SessionState.ACTIVE or self.queued or self.in_flight:
            return ""
        if self.failed + self.timed_out:
            return (f"nothing left to run, {self.failed + self.timed_out:,} item(s) failed or timed out: "
                    f"'symphony retry {name}' runs them again")
        if self.completed < self.items and not stopped:
            return (f"nothing queued or running, {self.items - self.completed:,} item(s) not done: "
                    f"'symphony repair {name}' enqueues what the outputs on disk say is missing")
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": str(self.state), "stages": list(self.stages),
                "paused_stages": list(self.paused_stages),
                "progress": round(self.progress, 4), "advice": self.advice}

    @classmethod
    def derive(cls, summary: SessionSummary, queues: Sequence[QueueStatus], steering: Any = None) -> "SessionStatus":
        """The session's totals from its queues; an active session with every item through the
        last stage and nothing queued or running is COMPLETE."""
        queued = in_flight = failed = timed_out = cancelled = 0
        for q in queues:  # one pass: this runs for every session of every snapshot
            queued += q.queued + q.delayed
            in_flight += q.in_flight
            failed += q.failed
            timed_out += q.timed_out
            cancelled += q.cancelled
        completed = min(summary.items, queues[-1].completed) if queues else 0
        state = summary.state
        if state == SessionState.ACTIVE and summary.items and completed >= summary.items and not (queued or in_flight):
            state = SessionState.COMPLETE
        return cls(name=summary.name, state=state, pipeline=summary.pipeline, stages=summary.stages,
                   items=summary.items, created=summary.created, file=summary.file, queued=queued,
                   in_flight=in_flight, completed=completed, failed=failed, timed_out=timed_out, cancelled=cancelled,
                   paused=bool(steering and steering.paused), paused_stages=tuple(steering.paused_stages) if steering else (),
                   priority=steering.priority if steering else 0)


@dataclass(frozen=True)
class WorkerStatus:
    id: str
    name: str
    host: str
    pid: int
    pool: str
    roles: tuple[str, ...]
    state: str  # busy | idle | stopping | quarantined (its host is set aside) | stale | dead
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
    server: ServerInfo | None = None  # the server's kind and settings, and the problems they mean
    slurm: tuple[SlurmTag, ...] = ()  # SLURM jobs per tag (pool): pending, running, finished
    drains: tuple[Any, ...] = ()  # the drains recorded (engine.drain.Drain): workers, hosts, pools
    stages: tuple[Any, ...] = ()  # each stage's limits and running tasks (engine.steering.StageControl)
    # a paged read's count of every registered worker (by state, per pool and host) and which page
    # ``workers`` is; None when ``workers`` holds every worker (fleet_summary() counts them then)
    fleet: FleetSummary | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema": SCHEMA_VERSION,
            "taken_at": self.taken_at,
            "redis": redact(self.redis),
            "used_memory": self.used_memory,
            "grace_s": self.grace_s,
            "server": self.server.to_dict() if self.server is not None else None,
            "queues": [asdict(q) for q in self.queues],
            "sessions": [s.to_dict() for s in self.sessions],
            "workers": [{**asdict(w), "roles": list(w.roles)} for w in self.workers],
            "events": [asdict(e) for e in self.events],
            "slurm": [t.to_dict() for t in self.slurm],
            "drains": [d.to_dict() for d in self.drains],
            "stages": [c.to_dict() for c in self.stages],
        }
        data["fleet"] = self.fleet_summary().to_dict()
        data.update(self.extra)
        return data

    def fleet_summary(self) -> FleetSummary:
        """``fleet``, or (a snapshot of every worker) the counts of ``workers``."""
        if self.fleet is not None:
            return self.fleet
        return summarize(((w.pool, w.host, w.state, w.cpu_percent, w.memory_percent, w.host_cpu_percent)
                          for w in self.workers), len(self.workers))

    def to_json(self, indent: int | None = 2) -> str:
        return redact(json.dumps(self.to_dict(), indent=indent, sort_keys=False))

    def write(self, path: str | os.PathLike[str]) -> str:
        """Write :meth:`to_json` to ``path`` atomically (a temporary file in the same folder,
        renamed into place: a reader never sees half a snapshot); return the absolute path written.
        The folder is created if needed."""
        target = os.path.abspath(os.fspath(path))
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".snapshot-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
            os.replace(temp, target)
        except BaseException:
            try:
                os.remove(temp)
            except OSError:
                pass
            raise
        return target

    def queue(self, role: str, session: str) -> QueueStatus | None:
        for q in self.queues:
            if q.role == role and q.session == session:
                return q
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


def _read_by_script(client: redis.Redis, read_keys: list[str], ops: list[str],
                    extra: Callable[[Any, bool], list[Any]] | None = None) -> tuple[list[Any], list[Any]]:
    """Read the keys with read.lua in chunks, as EVALSHA_RO: a read-only ACL user may run it;
    ``extra(pipe, True)`` queues more commands on the same pipeline (their replies come second)."""
    lua = scripts().read
    out: list[Any] = [None] * len(read_keys)
    with client.pipeline(transaction=False) as pipe:
        chunks = slot_chunks(client, read_keys)
        queued: list[Any] = [lua.queue(pipe, [read_keys[i] for i in chunk], ("".join(ops[i] for i in chunk),),
                                       readonly=True) for chunk in chunks]
        more = extra(pipe, True) if extra is not None else []
        replies = execute(client, pipe, queued + more)
    for chunk, reply in zip(chunks, replies):
        for index, value in zip(chunk, reply):
            out[index] = value
    return out, replies[len(chunks):]


def _script_refused(exc: BaseException) -> bool:
    """Redis 6.2 has no EVALSHA_RO; a user may not be allowed scripts: read without one then."""
    text = str(exc).lower()
    return (isinstance(exc, redis.exceptions.NoPermissionError) or "noperm" in text or "no permissions" in text
            or "unknown command" in text)


def _read_plainly(client: redis.Redis, read_keys: list[str], ops: list[str],
                  extra: Callable[[Any, bool], list[Any]] | None = None) -> tuple[list[Any], list[Any]]:
    """The same reads as read.lua, pipelined (HGETALL replies flattened like the script's)."""
    with client.pipeline(transaction=False) as pipe:
        for key, op in zip(read_keys, ops):
            if op == "l":
                pipe.llen(key)
            else:
                pipe.hgetall(key)
        if extra is not None:
            extra(pipe, False)
        replies = pipe.execute()
    mine = replies[:len(read_keys)]
    return [r if isinstance(r, int) else [x for pair in r.items() for x in pair] for r in mine], replies[len(read_keys):]


@dataclass(frozen=True)
class _First:
    """The first round trip's replies."""

    summaries: list[SessionSummary]
    leases: list[tuple[str, float]]
    results: list[Any]
    system: list[Any]
    now: float  # server time, seconds
    grace_ms: int
    server: ServerInfo
    slurm: tuple[SlurmTag, ...]
    drains: tuple[Any, ...] = ()
    steering: dict[str, Any] = field(default_factory=dict)


def _read_registry(client: redis.Redis, keys: Keys, events: int, fleet: Any = None,
                   page: tuple[int, int] = (0, 0)) -> _First:
    """Round trip 1: the registry, the leases (or, with a fleet reader, its page and its sweep's
    step), the recent events, the server's time and facts."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.sessions)
        if fleet is None:
            pipe.zrange(keys.workers, 0, -1, withscores=True)
        else:
            pipe.execute_command("TIME")  # a placeholder: the fleet reader's commands follow the first nine
        pipe.xrevrange(keys.results, count=max(1, events))
        pipe.xrevrange(keys.events, count=max(1, events))
        pipe.execute_command("TIME")  # a cluster pipeline refuses pipe.time()
        pipe.pttl(keys.grace)
        pipe.hgetall(keys.slurm_tags)
        pipe.hgetall(keys.drain)
        pipe.hgetall(keys.steering)
        extra = fleet.queue_first(pipe, page) if fleet is not None else 0
        queue_reads(pipe)  # INFO may be refused (an ACL user): the server's facts are then unknown
        replies = pipe.execute(raise_on_error=False)
    for index, reply in enumerate(replies[:9 + extra]):
        if isinstance(reply, Exception) and not 6 <= index < 9:  # slurm, drains, steering may be refused
            raise reply
    sessions_raw, leases, results, system, server_time, grace_ms, slurm_raw, drain_raw, steering_raw = replies[:9]
    if fleet is not None:
        fleet.take_first(replies[9:9 + extra])
        leases = []
    summaries = sorted((SessionSummary.from_json(n, v) for n, v in sessions_raw.items()), key=lambda s: s.name)
    slurm = (tuple(SlurmTag.from_summary(t, v) for t, v in sorted(slurm_raw.items()))
             if isinstance(slurm_raw, dict) else ())
    return _First(summaries=summaries, leases=leases, results=results, system=system,
                  now=server_time[0] + server_time[1] / 1_000_000,
                  grace_ms=grace_ms if isinstance(grace_ms, int) else 0, server=from_replies(client, replies[9 + extra:]),
                  slurm=slurm, drains=decode_drains(drain_raw), steering=all_steering(steering_raw))


def _read_counts(client: redis.Redis, keys: Keys, summaries: list[SessionSummary], worker_ids: list[str],
                 stages: Sequence[str] = (), extra: Callable[[Any, bool], list[Any]] | None = None) -> tuple[list[Any], list[Any]]:
    """Round trip 2: every session's counters, every queue's length and every worker's
    description (or, with ``extra``, what a fleet reader asks for), read by a read-only script
    in chunks (one reply per chunk instead of one per key keeps the client's cost low; chunks
    keep each atomic read short for the server)."""
    read_keys: list[str] = []
    ops: list[str] = []
    for summary in summaries:
        read_keys.append(keys.stats(summary.name))
        ops.append("h")
        for stage in summary.stages:
            read_keys.append(keys.queue(stage, summary.name))
            ops.append("l")
    for worker_id in worker_ids:
        read_keys.append(keys.worker(worker_id))
        ops.append("h")
    for stage in stages:  # each stage's limits and running tasks over the fleet
        read_keys.append(keys.control(stage))
        ops.append("h")
    if not read_keys and extra is None:
        return [], []
    try:
        return _read_by_script(client, read_keys, ops, extra)
    except redis.ResponseError as exc:
        if not _script_refused(exc):
            raise
        return _read_plainly(client, read_keys, ops, extra)


def _counts_by_stage(flat: list[str]) -> dict[str, dict[str, int]]:
    """A session's stats hash (flat field/value list) as stage -> metric -> count."""
    by_stage: dict[str, dict[str, int]] = {}
    for i in range(0, len(flat), 2):
        stage_name, _, metric = flat[i].partition("|")
        try:
            by_stage.setdefault(stage_name, {})[metric] = int(flat[i + 1])
        except ValueError:
            continue
    return by_stage


def _queue_status(summary: SessionSummary, index: int, stage: str, queued: int, counts: dict[str, int],
                  steering: Any = None, control: StageControl | None = None) -> QueueStatus:
    get = counts.get
    completions = get("completed", 0)
    # a stage without a done counter was only run by a version that counted completions
    done = get("done", completions)
    if done > summary.items:
        done = summary.items
    pools = summary.pools
    return QueueStatus(role=stage, session=summary.name, queued=queued, delayed=max(0, get("delayed", 0)),
                       in_flight=max(0, get("running", 0)), completed=done if done > 0 else 0,
                       failed=get("failed", 0), timed_out=get("timed_out", 0), cancelled=get("cancelled", 0),
                       retried=get("retried", 0), reclaimed=get("reclaimed", 0), enqueued=get("enqueued", 0),
                       pool=pools[index] if index < len(pools) else "", completions=completions,
                       failures=get("failed", 0) + get("cleared_failed", 0),
                       timeouts=get("timed_out", 0) + get("cleared_timed_out", 0),
                       cancellations=get("cancelled", 0) + get("cleared_cancelled", 0),
                       dead_lettered=get("deadletter", 0),
                       paused=bool(steering and (steering.paused or stage in steering.paused_stages)),
                       priority=steering.priority if steering else 0,
                       max_running=control.max_running if control else None,
                       stage_running=control.running if control else 0, rate=control.rate if control else "")


def _sessions_from(summaries: list[SessionSummary], second: list[Any], steering: dict[str, Any] | None = None,
                   controls: dict[str, StageControl] | None = None
                   ) -> tuple[list[QueueStatus], list[SessionStatus], int]:
    """Every queue and session from the second round trip; returns where the workers begin."""
    queues: list[QueueStatus] = []
    sessions: list[SessionStatus] = []
    pos = 0
    for summary in summaries:
        by_stage = _counts_by_stage(second[pos])
        pos += 1
        mine = []
        steered = steering.get(summary.name) if steering else None
        for index, stage in enumerate(summary.stages):
            mine.append(_queue_status(summary, index, stage, int(second[pos]), by_stage.get(stage, _NO_COUNTS),
                                      steered, controls.get(stage) if controls else None))
            pos += 1
        queues.extend(mine)
        sessions.append(SessionStatus.derive(summary, mine, steered))
    return queues, sessions, pos


def read_snapshot(client: redis.Redis, keys: Keys, *, redis_display: str = "", events: int = 50,
                  fleet: Any = None, page: tuple[int, int] = (0, 50)) -> Snapshot:
    """Read the whole status in two round trips. With ``fleet`` (an engine.fleet_view.FleetReader
    kept between reads), only the ``page`` (offset, limit) of the worker table is read, plus the
    fleet's aggregates (``Snapshot.fleet``); without, every worker."""
    if fleet is not None and not fleet.primed:
        fleet.prime(client)
    first = _read_registry(client, keys, events, fleet, page)
    now_ms = first.now * 1000
    stages = sorted({stage for summary in first.summaries for stage in summary.stages})
    extra = (lambda pipe, scripted: fleet.queue_second(pipe, now_ms, scripted)) if fleet is not None else None
    second, fleet_replies = _read_counts(client, keys, first.summaries, [w for w, _ in first.leases], stages, extra)
    controls = decode_controls(stages, second[len(second) - len(stages):] if stages else [])
    queues, sessions, pos = _sessions_from(first.summaries, second, first.steering, controls)
    if fleet is not None:
        workers, summary = fleet.take_second(fleet_replies, now_ms, _worker_status)
    else:
        workers = tuple(_worker_status(worker_id, expiry, dict(zip(it, it)), now_ms)
                        for (worker_id, expiry), it in zip(first.leases, map(iter, second[pos:])))
        summary = None  # every worker is here: to_dict() counts them (fleet_summary())
    events_list = ([_event_from_result(i, f) for i, f in first.results]
                   + [_event_from_system(i, f) for i, f in first.system])
    events_list.sort(key=lambda e: tuple(int(p) for p in e.id.split("-")), reverse=True)
    return Snapshot(taken_at=first.now, redis=redis_display, queues=tuple(queues), sessions=tuple(sessions),
                    workers=workers, events=tuple(events_list[:events]), used_memory=first.server.used_memory,
                    grace_s=max(0, first.grace_ms) / 1000, server=first.server, slurm=first.slurm,
                    drains=first.drains, stages=tuple(controls[s] for s in stages), fleet=summary)


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
        summary = SessionSummary.from_json(name, raw)
        if summary.state != SessionState.ACTIVE:
            continue
        indices = [i for i, s in enumerate(summary.stages) if s in wanted]
        if indices:
            sessions.append((name, summary.stages[: max(indices) + 1]))
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
