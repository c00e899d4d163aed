"""``Engine``: the one object the console, the CLI and the workers talk to.

It owns a Redis client and exposes the operations by domain: sessions, items, queues,
workers, snapshots. Everything it returns is immutable.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import redis

from symphony.spec import SessionRecord

from . import registry
from .config import RedisConfig, resolve_redis
from .connection import connect, ping
from .crypto import CryptoError, Sealer, task_aad
from .durations import DurationHistogram, read_durations
from .enqueue import EnqueueResult, ItemLike, enqueue
from .hosts import HostHealth, quarantined_hosts, report_host
from .hosts import HostHealth, quarantined_hosts, report_host
from .jobstore import JobStore, last_job, origin_jobs
from .keys import DEFAULT_KEYS, Keys
from .lease import Finish, WorkerLink
from .lost import LostReport, why_lost
from .messages import Task
from .outcomes import RETRYABLE, SessionState
from .metrics import (AZURE_RETENTION_S, HOST_BUCKET_S, HOST_RETENTION_S, AzureSample, CollectorStatus, HostCpu,
                      HostMetricsWriter, ScaleSetCpu, read_collector_status, read_host_cpu, read_scale_set_cpu,
                      store_azure, write_collector_status)
from .reclaim import ReclaimReport, lapsed_workers, reap, reclaim_worker
from .records import RecordCache
from .cluster import every_node
from .server import ServerInfo, read_server_info
from .fleet_view import FleetReader, read_worker
from .snapshot import Snapshot, WorkerStatus, read_snapshot, work_remaining
from .worklog import LogLine, read_lines, write_lines


class Engine:
    def __init__(self, config: RedisConfig | None = None, *, client: redis.Redis | None = None,
                 keys: Keys = DEFAULT_KEYS, socket_timeout: float = 10.0, sealer: Sealer | None = None,
                 origin: str | None = None):
        self.config = config or resolve_redis()
        self.keys = keys
        self.sealer = sealer  # encrypts task data and job key/values (engine.crypto); None: clear text
        self.origin = origin  # the batch job (e.g. a SLURM job) jobs run in: their key/values are listed under it
        self.client = client or connect(self.config, socket_timeout=socket_timeout)
        self.records = RecordCache(self.client, keys)
        self._follower = None  # a worker's incremental view of the registry (follow_registry)

    @classmethod
    def from_url(cls, url: str | None = None, **kwargs: Any) -> "Engine":
        return cls(resolve_redis(url), **kwargs)

    @property
    def display(self) -> str:
        return self.config.display

    def ping(self) -> tuple[int, ...]:
        return ping(self.client, self.config)

    def on_every_node(self, *command: Any) -> int:
        """Run ``command`` (``ACL SETUSER ...``) on the server, or on every node of a Redis
        Cluster, where each node keeps its own users; the number of nodes it ran on."""
        return len(every_node(self.client, *command))

    def server_info(self) -> ServerInfo:
        """The server's kind, version, TLS and memory settings, and what they mean for Symphony
        (``problems``, in words): one round trip; "unknown" for a user that may not run INFO."""
        return read_server_info(self.client)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- sessions ---------------------------------------------------------------------------
    def register_session(self, record: SessionRecord, *, items: int = 0, resume: bool = False,
                         adopt_queues: bool = False) -> str:
        return registry.register_session(self.client, self.keys, record, items=items, resume=resume,
                                         adopt_queues=adopt_queues)

    def session(self, name: str) -> tuple[SessionRecord, SessionState | str]:
        return registry.load_record(self.client, self.keys, name)

    def update_definition(self, record: SessionRecord, *, expected: SessionRecord) -> None:
        """Replace the registered definition ``expected`` of ``record.name`` by ``record`` (a
        compatible change, see :func:`engine.definition.compare_definitions`); workers use it for
        the tasks they start from their next heartbeat on."""
        registry.update_definition(self.client, self.keys, record, expected_fingerprint=expected.fingerprint())

    def sessions(self) -> list[registry.SessionSummary]:
        return registry.list_sessions(self.client, self.keys)

    def pools(self) -> dict[str, list[str]]:
        return registry.pools(self.client, self.keys)

    def roles_for(self, pool: str | None = None, roles: Iterable[str] | None = None) -> list[str]:
        if not roles:
            aliases = None
        elif self._follower is not None:  # a worker: aliases from its cache, re-read per changed session
            aliases = self._follower.aliases()
        else:
            aliases = registry.aliases(self.client, self.keys)
        return registry.roles_for(self.pools(), pool, roles, aliases)

    def follow_registry(self, *, lost: bool = False):
        """Catch up with the registry's changes since the last call (a worker, at a heartbeat whose
        epoch moved): forget the cached definitions and aliases of the sessions that changed only,
        or of every session when this is the first call, ``lost`` (Redis may have lost its data)
        or this process fell behind the change log. Returns a ``RegistryChanges``."""
        from .following import RegistryFollower

        if self._follower is None:
            self._follower = RegistryFollower(self.client, self.keys, self.records)
        return self._follower.follow(lost=lost)

    # --- items ------------------------------------------------------------------------------
    def enqueue(self, session: str, stage: str, items: Iterable[ItemLike], *,
                progress: Callable[[int], None] | None = None) -> EnqueueResult:
        """Enqueue (id, metadata[, ordinal]) items for ``stage``; already queued or running ones are skipped."""
        from .scripts import scripts

        return enqueue(self.client, self.keys, scripts(), session, stage, items, progress=progress,
                       sealer=self.sealer)

    def open_task(self, task: Task) -> dict[str, Any]:
        """The task's metadata, decrypted if it is sealed. Raises :class:`CryptoError` (with the
        reason) for a wrong key, tampered data, sealed data without a key, or clear data when a
        key is configured: such a task must not run."""
        if self.sealer is None:
            if task.sealed is not None:
                raise CryptoError("the task's data is encrypted but this process has no key "
                                  "(set SYMPHONY_KEY or SYMPHONY_KEY_FILE, or --encryption-key-file)", this_process=True)
            return dict(task.meta or {})
        if task.sealed is None:
            raise CryptoError("the task's data is not encrypted, but this process has a key and accepts only "
                              "encrypted task data", this_process=True)
        meta = self.sealer.open_json(task.sealed, task_aad(task.session, task.item))
        if not isinstance(meta, dict):
            raise CryptoError("the decrypted task data is not an object")
        return meta

    def results_reader(self, group: str, consumer: str = "forwarder"):
        """A reader of the results stream as ``consumer`` of the consumer group ``group``
        (:mod:`engine.forwarding`: every record at least once, resuming where it stopped)."""
        from .forwarding import ResultsReader

        return ResultsReader(self.client, self.keys.results, group, consumer)

    def job_store(self, session: str, stage: str, item: str) -> JobStore:
        return JobStore(self.client, self.keys, session, stage, item, sealer=self.sealer, origin=self.origin)

    def last_job(self, session: str) -> tuple[str | None, dict[str, str]]:
        return last_job(self.client, self.keys, session, sealer=self.sealer)

    def origin_jobs(self, origin: str, limit: int = 100) -> list[tuple[str, str]]:
        """The jobs (session, ``stage:item``) that wrote key/values from one batch job, newest first."""
        return origin_jobs(self.client, self.keys, origin, limit)

    # --- SLURM job accounting (symphony/engine/slurm_accounting.py) ----------------------------
    @property
    def slurm(self):
        """The SLURM job accounting sets (:class:`~engine.slurm_accounting.SlurmAccounting`)."""
        from .slurm_accounting import SlurmAccounting

        accounting = self.__dict__.get("_slurm")
        if accounting is None:
            accounting = self.__dict__["_slurm"] = SlurmAccounting(self.client, self.keys)
        return accounting

    # --- workers ----------------------------------------------------------------------------
    def worker_link(self, worker_id: str, roles: Iterable[str] = (), *, idle_wait_s: float = 2.0) -> WorkerLink:
        return WorkerLink(self.client, self.keys, worker_id, list(roles), idle_wait_s=idle_wait_s)

    def reclaim_worker(self, worker_id: str, *, force: bool = False, reason: str = "its lease lapsed",
                       stopped: bool = False) -> ReclaimReport:
        return reclaim_worker(self.client, self.keys, worker_id, self.records, force=force, reason=reason,
                              stopped=stopped)

    def reap(self, lapsed: Iterable[str] | None = None, lock_ttl_s: float = 10.0) -> list[ReclaimReport]:
        """Reclaim the tasks of workers whose lease lapsed (any process may call this)."""
        if lapsed is None:
            lapsed, _, _ = lapsed_workers(self.client, self.keys)
        return reap(self.client, self.keys, self.records, list(lapsed), lock_ttl_s)

    def report_host(self, host: str, stage: str, *, failed: int = 0, completed: int = 0,
                    peers: bool = True) -> HostHealth:
        """Record a host's failed attempts and completions at ``stage``; its streak, quarantine and
        (``peers``, always after failures) how many other hosts are healthy at that stage."""
        return report_host(self.client, self.keys, host, stage, failed, completed, peers=peers)

    def quarantined_hosts(self) -> dict[str, int]:
        """Hosts set aside now (their attempts kept failing while others completed): host -> until (server ms)."""
        return quarantined_hosts(self.client, self.keys)

    def why_lost(self, worker_id: str, finish: Finish, *, resent: bool = False) -> LostReport:
        """Why ``finish`` came back ``lost``: its lease was reclaimed, an earlier attempt of the
        same report was recorded (``resent``), or Redis no longer had it at all."""
        return why_lost(self.client, self.keys, worker_id, finish, resent=resent)

    def worker_log(self, worker_id: str, count: int = 100, *, after: str | None = None) -> tuple[LogLine, ...]:
        """A worker process's recent log lines, oldest first (``after``: only those after that id)."""
        return read_lines(self.client, self.keys, worker_id, count, after=after)

    def write_worker_log(self, worker_id: str, lines, *, ttl_ms: int) -> int:
        """Append ``(at_ms, level, message)`` lines (already redacted) to a worker's log stream."""
        return write_lines(self.client, self.keys, worker_id, lines, ttl_ms=ttl_ms)

    def keep_worker_log(self, worker_id: str, *, ttl_ms: int) -> None:
        """Renew the TTL of a worker's log stream (its heartbeat does, so a quiet worker keeps its log)."""
        self.client.pexpire(self.keys.worker_log(worker_id), int(ttl_ms))

    def item_stage(self, session: str, item: str) -> str | None:
        """The stage where ``item`` is queued, retrying or in flight (None: it finished or stopped)."""
        return self.client.hget(self.keys.live(session), item)

    def work_remaining(self, roles: Iterable[str]) -> int:
        """Tasks still to come for a worker serving ``roles`` (0 lets a burst worker exit)."""
        return work_remaining(self.client, self.keys, list(roles))

    # --- operator verbs -----------------------------------------------------------------------
    def verify(self, paths=None, *, resume: bool = False, tasks_dir: str = "tasks"):
        """Verify session files, including the checks that need Redis (session already active, clashes)."""
        from .verify import verify_paths

        return verify_paths(paths, engine=self, resume=resume, tasks_dir=tasks_dir)

    def session_spec(self, session: str, *, tasks_dir: str = "tasks", file: str | None = None):
        """The session's definition as its file says now: ``file``, else the file Redis remembers,
        else the one in ``tasks_dir`` that names it. Raises :class:`SpecError` for a bad file."""
        from .repair import resolve_spec

        return resolve_spec(self, session, tasks_dir, file)

    def plan_repair(self, session: str, *, retry_failed: bool = False, tasks_dir: str = "tasks",
                    file: str | None = None):
        """What ``repair`` would enqueue for ``session``, from the outputs on disk (nothing changes)."""
        from .repair import plan_repair, resolve_spec

        return plan_repair(self, resolve_spec(self, session, tasks_dir, file), retry_failed=retry_failed)

    def repair(self, plan, *, resume: bool = False, adopt: bool = False,
               progress: Callable[[int], None] | None = None):
        from .repair import apply_repair

        return apply_repair(self, plan, resume=resume, adopt=adopt, progress=progress)

    def cancel(self, session: str):
        from .control import cancel_session

        return cancel_session(self, session)

    def retry(self, session: str, stage: str | None = None, states: Iterable[str] = RETRYABLE):
        from .control import retry_session

        return retry_session(self, session, stage, states)

    def purge(self, session: str, *, job_keys: bool = False, force: bool = False):
        from .control import purge_session

        return purge_session(self, session, job_keys=job_keys, force=force)

    def failures(self, session: str, limit: int = 200):
        from .control import failures

        return failures(self, session, limit)

    def session_detail(self, session: str):
        from .control import session_detail

        return session_detail(self, session)

    def queues(self):
        from .control import list_queues

        return list_queues(self)

    def jobs(self, session: str, limit: int = 100) -> list[str]:
        """Ids (``stage:item``) of jobs of ``session`` that wrote key/values (up to ``limit``)."""
        out = []
        for job_id in self.client.sscan_iter(self.keys.jobs(session), count=500):
            out.append(job_id)
            if len(out) >= limit:
                break
        return sorted(out)

    def job(self, session: str, job_id: str) -> dict[str, str]:
        from .jobstore import read_job

        return read_job(self.client, self.keys, session, job_id)

    # --- steering (symphony/engine/steering.py): pause, priority, limits, rate ---------------------
    def pause(self, session: str, stage: str | None = None, *, by: str | None = None):
        """No new claims of ``session`` (or of one stage of it); tasks in flight finish. Atomic."""
        from .steering import pause

        return pause(self.client, self.keys, session, stage, by=by)

    def resume(self, session: str, stage: str | None = None, *, by: str | None = None):
        """Undo a pause (the whole session and every paused stage, or one stage)."""
        from .steering import resume

        return resume(self.client, self.keys, session, stage, by=by)

    def set_priority(self, session: str, priority: int, *, by: str | None = None):
        """0 (default) .. 1000: workers take the highest-priority ready session first."""
        from .steering import set_priority

        return set_priority(self.client, self.keys, session, priority, by=by)

    def set_session_limit(self, session: str, stage: str, limit: int | None, *, by: str | None = None):
        """The session's own cap on its running tasks of ``stage`` (None: none of its own)."""
        from .steering import set_session_limit

        return set_session_limit(self.client, self.keys, session, stage, limit, by=by)

    def set_stage_limits(self, stage: str, **limits):
        """Live fleet-wide limits of a stage: ``max_running=N|None``, ``rate="120/min"|None``
        (None: back to what the pipeline declares)."""
        from .steering import set_stage_limits

        return set_stage_limits(self.client, self.keys, stage, **limits)

    def stage_control(self, stages: Iterable[str]):
        """Each stage's limits and its running tasks over the fleet (:class:`StageControl`)."""
        from .steering import stage_control

        return stage_control(self.client, self.keys, stages)

    def steering(self, session: str):
        """How ``session`` is steered (:class:`Steering`): paused, priority, its own caps."""
        from .steering import steering

        return steering(self.client, self.keys, session)

    # --- drain (symphony/engine/drain.py) ----------------------------------------------------------
    def drain(self, worker: str | None = None, host: str | None = None, pool: str | None = None, *,
              now: bool = False, idle: bool = False, by: str | None = None):
        """Drain a worker (its id, or every process of a ``--name``), a host or a pool: its workers
        stop claiming, finish what they hold (``now``: hand it back) and exit (``idle``: stay up,
        claiming nothing, until undrained). Seen by each worker at its next heartbeat."""
        from .drain import drain

        return drain(self.client, self.keys, worker=worker, host=host, pool=pool, now=now, idle=idle, by=by)

    def undrain(self, worker: str | None = None, host: str | None = None, pool: str | None = None, *,
                by: str | None = None) -> bool:
        """Remove a drain (True if there was one); its idle workers claim again."""
        from .drain import undrain

        return undrain(self.client, self.keys, worker=worker, host=host, pool=pool, by=by)

    def drains(self):
        """Every drain recorded (:class:`~engine.drain.Drain`), oldest first."""
        from .drain import drains

        return drains(self.client, self.keys)

    def drain_for(self, worker_id: str, *, name: str = "", host: str = "", pool: str | None = None):
        """The drain that applies to this worker process, or None (the worker's view; one round trip)."""
        from .drain import drain_for

        return drain_for(self.client, self.keys, worker_id, name=name, host=host, pool=pool)

    def forget_drain(self, worker_id: str) -> None:
        """A worker that exited drained drops its own entry."""
        from .drain import forget_worker

        forget_worker(self.client, self.keys, worker_id)

    # --- cooldowns (symphony/engine/cooldown.py) --------------------------------------------------
    def start_cooldown(self, target: str, seconds: float) -> None:
        """Record a scale action on ``target`` now (server time); it cools for ``seconds``."""
        from .cooldown import start_cooldown

        start_cooldown(self.client, self.keys, target, seconds)

    def cooldown_left(self, target: str) -> float:
        """Seconds until ``target`` may act again (0: now), whichever process acted last."""
        from .cooldown import cooldown_left

        return cooldown_left(self.client, self.keys, target)

    # --- status -----------------------------------------------------------------------------
    def snapshot(self, *, events: int = 50, reader: FleetReader | None = None,
                 page: tuple[int, int] = (0, 50)) -> Snapshot:
        """The status; with a ``reader`` (:meth:`fleet_reader`, kept between calls) only the
        ``page`` (offset, limit) of the worker table and the fleet's aggregates (engine/fleet_view.py)."""
        return read_snapshot(self.client, self.keys, redis_display=self.display, events=events, fleet=reader,
                             page=page)

    def worker_status(self, worker_id: str) -> WorkerStatus | None:
        """One registered worker's status (None if it is not registered), in one round trip."""
        return read_worker(self.client, self.keys, worker_id)

    def fleet_reader(self, *, aggregates: bool = True) -> FleetReader:
        """A memory of the fleet for paged snapshots (one per console view); without
        ``aggregates`` it reads only the page (no sweep of the fleet)."""
        return FleetReader(self.keys, aggregates=aggregates)

    def task_durations(self, stages: Iterable[str]) -> tuple[DurationHistogram, ...]:
        """How long completed tasks of ``stages`` took: one histogram per stage (workers add to it
        as they finish tasks; symphony/engine/durations.py), in one round trip."""
        return read_durations(self.client, self.keys, stages)

    # --- machine metrics (symphony/engine/metrics.py; the Azure collector is symphony/azure/monitor) ---------
    def scale_set_cpu(self, window_s: float = 3600.0) -> tuple[ScaleSetCpu, ...]:
        """CPU per VM scale set from Azure Monitor when its data is fresh, else per worker pool
        from the workers' heartbeats (``source`` tells which); two round trips."""
        return read_scale_set_cpu(self.client, self.keys, window_s)

    def host_cpu(self, window_s: float = 3600.0, pool: str | None = None) -> tuple[HostCpu, ...]:
        """Each host's CPU history from the workers' heartbeats (one sample per host per bucket)."""
        return read_host_cpu(self.client, self.keys, window_s, pool)

    def metrics_status(self) -> CollectorStatus | None:
        """What the Azure Monitor collector last said, or None if none ran recently."""
        return read_collector_status(self.client, self.keys)

    def host_metrics_writer(self, pool: str | None, host: str, *, interval_s: float = HOST_BUCKET_S,
                            retention_s: float = HOST_RETENTION_S) -> HostMetricsWriter:
        """For a worker's heartbeat: ``writer.offer(beat.now_ms, sample)`` on every beat."""
        return HostMetricsWriter(self.client, self.keys, pool, host, interval_s=interval_s, retention_s=retention_s)

    def store_azure(self, scale_set: str, window: tuple[float, float], totals: Sequence[AzureSample] | None,
                    instances: Sequence[AzureSample] | None, *, retention_s: float = AZURE_RETENTION_S,
                    now: float | None = None) -> int:
        """Replace a scale set's Azure Monitor samples inside ``window`` (unix seconds) by the ones
        just read, in one transaction (None leaves that series alone); the number written."""
        return store_azure(self.client, self.keys, scale_set, window, totals, instances, retention_s=retention_s,
                           now=now)

    def write_collector_status(self, state: str, message: str, *, interval_s: float | None,
                               scale_sets: Iterable[str] = (), now: float | None = None) -> None:
        """What the Azure Monitor collector says now, for :meth:`metrics_status` (expires by itself)."""
        write_collector_status(self.client, self.keys, state, message, interval_s=interval_s,
                               scale_sets=scale_sets, now=now)
