"""Every metric the Prometheus exporter exports: name, type, help and labels, declared once.

The collector builds its families from these declarations, docs/metrics.md lists them, and the
tests check that every expression of the Grafana dashboard and of the alert rules names one of
them (by scraping the exporter, not by reading this list).

Counters end in ``_total`` in the exposition (prometheus-client adds it to the name below).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"
QUEUE = ("session", "stage", "pool")
WORKER = ("worker", "pool", "host")


@dataclass(frozen=True)
class Metric:
    name: str  # without _total for counters
    kind: str
    help: str
    labels: tuple[str, ...] = ()

    def family(self) -> Any:
        make = {GAUGE: GaugeMetricFamily, COUNTER: CounterMetricFamily, HISTOGRAM: HistogramMetricFamily}[self.kind]
        return make(self.name, self.help, labels=list(self.labels))

    @property
    def samples(self) -> tuple[str, ...]:
        """The names of this metric's samples in the text exposition."""
        if self.kind == COUNTER:
            return (f"{self.name}_total",)
        if self.kind == HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _m(name: str, kind: str, help: str, labels: tuple[str, ...] = ()) -> Metric:
    return Metric(name, kind, help, labels)


# --- per session and stage (one queue) -------------------------------------------------------------
TASKS_QUEUED = _m("symphony_tasks_queued", GAUGE, "Tasks waiting in the queue (LLEN of stage:session).", QUEUE)
TASKS_DELAYED = _m("symphony_tasks_delayed", GAUGE, "Tasks waiting for a retry's backoff.", QUEUE)
TASKS_IN_FLIGHT = _m("symphony_tasks_in_flight", GAUGE, "Tasks claimed by a worker and not finished.", QUEUE)
ITEMS_COMPLETED = _m("symphony_items_completed", GAUGE,
                     "Items done at this stage, each counted once (never more than the session's items).", QUEUE)
ITEMS_FAILED = _m("symphony_items_failed", GAUGE, "Items now failed at this stage (a retry takes them out).", QUEUE)
ITEMS_TIMED_OUT = _m("symphony_items_timed_out", GAUGE, "Items now timed out at this stage.", QUEUE)
ITEMS_CANCELLED = _m("symphony_items_cancelled", GAUGE, "Items now cancelled at this stage.", QUEUE)
ENQUEUED = _m("symphony_tasks_enqueued", COUNTER, "Tasks enqueued for this stage.", QUEUE)
COMPLETED = _m("symphony_tasks_completed", COUNTER, "Tasks completed at this stage (every completion, reruns included).",
               QUEUE)
FAILED = _m("symphony_tasks_failed", COUNTER, "Tasks that failed at this stage after their last attempt.", QUEUE)
TIMED_OUT = _m("symphony_tasks_timed_out", COUNTER, "Tasks that timed out at this stage after their last attempt.",
               QUEUE)
CANCELLED = _m("symphony_tasks_cancelled", COUNTER, "Tasks cancelled at this stage.", QUEUE)
RETRIED = _m("symphony_tasks_retried", COUNTER, "Failed attempts scheduled again (retry with backoff).", QUEUE)
RECLAIMED = _m("symphony_tasks_reclaimed", COUNTER, "Tasks taken back from a dead worker.", QUEUE)
DEAD_LETTERED = _m("symphony_messages_dead_lettered", COUNTER,
                   "Messages found in this queue that were no task, set aside in the dead-letter list.", QUEUE)

# --- per session ---------------------------------------------------------------------------------
SESSION_ITEMS = _m("symphony_session_items", GAUGE, "Items of the session.", ("session",))
SESSION_COMPLETED = _m("symphony_session_completed_items", GAUGE, "Items through the last stage.", ("session",))
SESSION_PROGRESS = _m("symphony_session_progress_ratio", GAUGE, "Items through the last stage / items (0..1).",
                      ("session",))
SESSION_STATE = _m("symphony_session_state", GAUGE, "1 for the session's state, 0 for the others.",
                   ("session", "state"))
SESSION_CREATED = _m("symphony_session_created_timestamp_seconds", GAUGE, "When the session was registered.",
                     ("session",))

# --- workers and machines ----------------------------------------------------------------------------
WORKERS = _m("symphony_workers", GAUGE, "Worker processes by pool and state (starting, busy, idle, stopping, stale, dead).",
             ("pool", "state"))
STAGE_WORKERS = _m("symphony_stage_workers", GAUGE,
                   "Worker processes alive (starting, busy, idle or late) that serve the stage.", ("stage",))
HEARTBEAT_AGE = _m("symphony_worker_heartbeat_age_seconds", GAUGE, "Seconds since the worker's last heartbeat.",
                   WORKER)
HEARTBEAT_INTERVAL = _m("symphony_worker_heartbeat_interval_seconds", GAUGE, "The worker's heartbeat interval.",
                        WORKER)
TASK_AGE = _m("symphony_worker_task_age_seconds", GAUGE, "Seconds the worker's current task has run (busy workers).",
              WORKER)
WORKER_CPU = _m("symphony_worker_cpu_percent", GAUGE, "CPU of the worker process and its handlers (% of the host).",
                WORKER)
WORKER_RSS = _m("symphony_worker_rss_bytes", GAUGE, "Resident memory of the worker process and its handlers.", WORKER)
WORKER_COMPLETED = _m("symphony_worker_tasks_completed", COUNTER, "Tasks the worker process completed.", WORKER)
HOST_CPU = _m("symphony_host_cpu_percent", GAUGE, "The host's CPU, from its workers' heartbeats.", ("host", "pool"))
HOST_MEMORY = _m("symphony_host_memory_percent", GAUGE, "The host's memory in use, from its workers' heartbeats.",
                 ("host", "pool"))
SCALE_SET_CPU = _m("symphony_scale_set_cpu_percent", GAUGE,
                   "CPU of a VM scale set (Azure Monitor) or a worker pool (heartbeats), the latest point.",
                   ("scale_set", "source"))
SCALE_SET_INSTANCES = _m("symphony_scale_set_instances", GAUGE, "VMs (Azure) or hosts (heartbeats) reporting.",
                         ("scale_set", "source"))

# --- SLURM (symphony slurm: the tracker's view of the SLURM jobs that run workers) --------------------
SLURM = ("tag", "pool", "cluster")
SLURM_JOBS = _m("symphony_slurm_jobs", GAUGE,
                "SLURM jobs of a tag by state: pending, running, and the finished sets (completed, failed, timeout, "
                "cancelled, ...; the latest jobs of each).", (*SLURM, "state"))
SLURM_POLL_AGE = _m("symphony_slurm_tracker_poll_age_seconds", GAUGE, "Seconds since a tracker last asked SLURM.",
                    SLURM)

# --- Redis -----------------------------------------------------------------------------------------
REDIS_USED_MEMORY = _m("symphony_redis_used_memory_bytes", GAUGE, "Redis used_memory (INFO memory).")
REDIS_MAXMEMORY = _m("symphony_redis_maxmemory_bytes", GAUGE, "Redis maxmemory (0: no limit).")
REDIS_INFO = _m("symphony_redis_info", GAUGE, "The Redis server: its kind, version and maxmemory-policy (always 1).",
                ("kind", "version", "maxmemory_policy"))
REDIS_CAN_EVICT = _m("symphony_redis_can_evict", GAUGE,
                     "1 if the maxmemory-policy lets Redis delete Symphony's keys (allkeys-*, volatile-*), else 0.")
REDIS_OUT_OF_MEMORY = _m("symphony_redis_out_of_memory", GAUGE, "1 if Redis refuses Symphony's writes (over maxmemory).")
REDIS_PROBLEMS = _m("symphony_redis_problems", GAUGE,
                    "Problems the server's settings mean for Symphony (symphony status says which).")
REDIS_GRACE = _m("symphony_redis_grace_seconds", GAUGE,
                 "Left of the grace window after Redis was unavailable (no lease lapses meanwhile).")

# --- task durations ----------------------------------------------------------------------------------
DURATION = _m("symphony_task_duration_seconds", HISTOGRAM, "How long completed tasks of the stage took.",
              ("stage",))

# --- the exporter itself -----------------------------------------------------------------------------
UP = _m("symphony_up", GAUGE, "1 if the exporter's latest read of Redis succeeded, else 0.")
SNAPSHOT_AGE = _m("symphony_snapshot_age_seconds", GAUGE, "Age of the figures exported (the latest good read).")
READ_SECONDS = _m("symphony_snapshot_read_seconds", GAUGE, "How long the latest read of Redis took.")
READS = _m("symphony_exporter_reads", COUNTER, "Reads of Redis by the exporter (at most one per cache period).")
READ_ERRORS = _m("symphony_exporter_read_errors", COUNTER, "Reads of Redis that failed.")

CATALOGUE: tuple[Metric, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Metric))
