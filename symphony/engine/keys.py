"""Every Redis key Symphony writes, in one place. ``docs/keys.md`` documents each one.

Every key carries a Redis Cluster hash tag, so that each atomic step (a script, a ``MULTI``)
touches one hash slot, on a single server and on a cluster alike:

* the **fleet slot**, tag ``{<ns>}``: everything that is not one session's (workers, ready sets,
  bells, stage limits, streams, metrics): ``{symphony}:workers``;
* a **session slot**, tag ``{<session>}``: a session's queues, counters, live entries, outcomes and
  the in-flight lists of its tasks: ``symphony:stats:{block7}``.

Queues are named ``role:{session}`` (``rvm:{block7}``) so an operator can ``LLEN`` and ``LRANGE``
them with plain ``redis-cli`` (``redis-cli -c`` on a cluster). Names that go into keys are
validated (:mod:`symphony.spec.names`), so they never contain ``:``, braces or path separators.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    ns: str = "symphony"
    queue_prefix: str = ""

    @property
    def fleet(self) -> str:
        """The prefix of every fleet-slot key: the namespace as a hash tag (``{symphony}``)."""
        return "{" + self.ns + "}"

    @staticmethod
    def session_tag(session: str) -> str:
        """The hash tag of a session's slot (``{block7}``)."""
        return "{" + session + "}"

    # --- queues (one per role and session) -------------------------------------------------
    def queue(self, stage: str, session: str) -> str:
        """LIST of task messages waiting for ``stage`` in ``session`` (RPUSH tail, pop head)."""
        return f"{self.queue_prefix}{stage}:{{{session}}}"

    def delayed(self, stage: str, session: str) -> str:
        """ZSET of tasks waiting for their retry backoff (member: message, score: due ms)."""
        return f"{self.ns}:delayed:{stage}:{{{session}}}"

    def ready(self, role: str) -> str:
        """ZSET of sessions with work for ``role`` (score: microseconds when eligible; LRU order = fairness)."""
        return f"{self.fleet}:ready:{role}"

    def bell(self, role: str) -> str:
        """LIST of wake-up tokens idle workers of ``role`` block on (trimmed to a few tokens)."""
        return f"{self.fleet}:bell:{role}"

    def control(self, stage: str) -> str:
        """HASH of a stage's fleet-wide limits (docs/control.md): ``max_running`` (the operator's) and
        ``max_running_declared`` (the pipeline's), ``running`` (the permits taken over the fleet:
        before a claim, given back by reports, by the claimer for unused ones and by forget for a
        dead worker's; who holds them: :meth:`permits`), ``rate`` / ``rate_declared`` (``n/ms``),
        and the token bucket's ``tokens`` and ``at``."""
        return f"{self.fleet}:control:{stage}"

    @property
    def steering(self) -> str:
        """HASH session -> JSON (paused, paused_stages, priority, max_running): how each steered
        session is steered, for the status (the claim reads the session's own hash)."""
        return f"{self.fleet}:steering"

    # --- sessions --------------------------------------------------------------------------
    @property
    def sessions(self) -> str:
        """HASH session -> compact JSON summary (state, pipeline, stages, created)."""
        return f"{self.fleet}:sessions"

    def session(self, session: str) -> str:
        """HASH of one session: state, spec (JSON), file, fingerprint, created."""
        return f"{self.ns}:session:{{{session}}}"

    def stats(self, session: str) -> str:
        """HASH ``stage|metric`` -> count (running, completed, failed, timed_out, cancelled, ...)."""
        return f"{self.ns}:stats:{{{session}}}"

    def live(self, session: str) -> str:
        """HASH item -> stage, for every item queued, delayed or in flight (dedup of enqueues)."""
        return f"{self.ns}:live:{{{session}}}"

    def done(self, session: str, stage: str) -> str:
        """STRING bitmap: bit n is set once the item of ordinal n completed ``stage`` (counted once)."""
        return f"{self.ns}:done:{{{session}}}:{stage}"

    def scratch(self, session: str) -> str:
        """STRING a script uses and deletes within the same call (never left behind)."""
        return f"{self.ns}:scratch:{{{session}}}"

    def outcomes(self, session: str) -> str:
        """HASH item -> JSON record of its failure, timeout or cancellation, with the reason."""
        return f"{self.ns}:outcomes:{{{session}}}"

    def jobs(self, session: str) -> str:
        """SET of job ids (``stage:item``) that wrote key/values, for purge."""
        return f"{self.ns}:jobs:{{{session}}}"

    def job(self, session: str, stage: str, item: str) -> str:
        """HASH of one job's own key/values (its own namespace); has a TTL."""
        return f"{self.ns}:job:{{{session}}}:{stage}:{item}"

    def last_job(self, session: str) -> str:
        """STRING: the id (``stage:item``) of the job that most recently wrote key/values."""
        return f"{self.ns}:lastjob:{{{session}}}"

    @property
    def pools(self) -> str:
        """HASH pool -> JSON list of roles, the union over registered sessions."""
        return f"{self.fleet}:pools"

    @property
    def epoch(self) -> str:
        """STRING counter bumped whenever the session registry changes (workers re-read on change)."""
        return f"{self.fleet}:epoch"

    @property
    def registry_changes(self) -> str:
        """STREAM of registry changes, one entry per epoch bump: ``s`` session, ``c`` change
        (registered, resumed, updated, cancelled, active, purged); capped. Workers read only the
        entries after the last one they saw, and re-read the sessions named there."""
        return f"{self.fleet}:sessions:changes"

    # --- workers and leases ------------------------------------------------------------------
    @property
    def workers(self) -> str:
        """ZSET worker id -> last heartbeat (server ms). A worker's leases last as long as it beats."""
        return f"{self.fleet}:workers"

    def worker(self, worker_id: str) -> str:
        """HASH describing one worker process (host, pid, pool, roles, current task, cpu, memory)."""
        return f"{self.fleet}:worker:{worker_id}"

    def worker_log(self, worker_id: str) -> str:
        """STREAM of a worker process's recent log lines (``t`` ms, ``l`` level, ``m`` redacted
        message), capped, with the TTL of the worker's hash."""
        return f"{self.fleet}:log:{worker_id}"

    def inflight(self, session: str, worker_id: str) -> str:
        """LIST (session slot) of the task messages of ``session`` a worker process has claimed and
        not yet finished."""
        return f"{self.ns}:inflight:{{{session}}}:{worker_id}"

    def holders(self, session: str) -> str:
        """SET (session slot) of the workers whose in-flight list of ``session`` may be non-empty
        (added by the claim, removed when the list empties)."""
        return f"{self.ns}:holders:{{{session}}}"

    def holds(self, worker_id: str) -> str:
        """SET (fleet slot) of the sessions a worker may hold tasks in: written before its first
        claim in a session, read by the reaper, forget and repair; deleted when it is forgotten."""
        return f"{self.fleet}:holds:{worker_id}"

    def permits(self, worker_id: str) -> str:
        """HASH (fleet slot) stage -> permits of limited stages (max_running, rate) a worker holds:
        taken before a claim, given back by its reports, or by the reaper when it is forgotten."""
        return f"{self.fleet}:permits:{worker_id}"

    def ready_version(self, role: str) -> str:
        """HASH (fleet slot) session -> the version (server µs) of the last step that added work for
        ``role`` in the session: a claimer removes a session from the ready set only if it is
        unchanged since it read its hint, so a session with work never drops out."""
        return f"{self.fleet}:readyv:{role}"

    @property
    def reaper_lock(self) -> str:
        """STRING lock (SET NX PX) held by the process reclaiming dead workers' tasks."""
        return f"{self.fleet}:lock:reaper"

    @property
    def sweep_lock(self) -> str:
        """STRING lock (PX 30 s) of the heartbeat that sweeps the ready sets (engine/sweep.py)."""
        return f"{self.fleet}:lock:sweep"

    @property
    def clock(self) -> str:
        """STRING: server ms of the latest heartbeat of any process (detects Redis outages)."""
        return f"{self.fleet}:clock"

    @property
    def grace(self) -> str:
        """STRING with a TTL: while it exists, nobody's lease is considered lapsed (after an outage)."""
        return f"{self.fleet}:grace"

    @property
    def drain(self) -> str:
        """HASH ``worker:<id or name>`` / ``host:<host>`` / ``pool:<pool>`` -> JSON drain record
        (now, idle, by, at): the workers it matches stop claiming (symphony/engine/drain.py)."""
        return f"{self.fleet}:drain"

    # --- streams -----------------------------------------------------------------------------
    @property
    def results(self) -> str:
        """STREAM of completed, failed, timed-out and cancelled tasks (capped with MAXLEN ~)."""
        return f"{self.fleet}:results"

    @property
    def events(self) -> str:
        """STREAM of operator and system events (session initialized, worker lost, ...), capped."""
        return f"{self.fleet}:events"

    def deadletter(self, session: str) -> str:
        """LIST (session slot) of messages found in the session's queues or in flight that are no
        task (newest first, trimmed)."""
        return f"{self.ns}:deadletter:{{{session}}}"

    # --- hosts that fail everything (symphony/engine/hosts.py; the policy: engine/outcomes.py) -----
    def host_fails(self, host: str) -> str:
        """STRING: failed attempts on ``host`` since its last completion (PX 10 minutes)."""
        return f"{self.fleet}:hosts:fails:{host}"

    @property
    def host_rates(self) -> str:
        """HASH "host|stage" -> "completions,failures,at ms": recent outcomes, decaying over a minute."""
        return f"{self.fleet}:hosts:rates"

    @property
    def hosts_quarantined(self) -> str:
        """ZSET host -> server ms its quarantine ends (ended ones removed by every write)."""
        return f"{self.fleet}:hosts:quarantined"

    # --- metrics (symphony/engine/metrics.py; docs/keys.md) -------------------------------------------
    def metric_series(self, source: str, scope: str, part: str = "") -> str:
        """ZSET time series of one scope (a pool's hosts, a scale set), score: sample time in ms,
        member: the sample as ``time|...`` fields; trimmed by age. ``source`` is ``hosts`` or
        ``azure``; ``part`` tells apart the series of one scope (``vm``: per instance)."""
        return f"{self.fleet}:metrics:{source}:{scope}" + (f":{part}" if part else "")

    def metric_hosts_seen(self, pool: str) -> str:
        """HASH host -> the last time bucket (ms) a sample of that host was written (dedup)."""
        return f"{self.fleet}:metrics:hosts:{pool}:seen"

    def durations(self, stage: str) -> str:
        """HASH: the histogram of ``stage``'s completed task durations, one count per bucket
        (field: the bucket's upper bound in ms, or ``inf``) and ``sum_ms``; written by the fleet step
        of a worker's reports (engine/reports.py)."""
        return f"{self.fleet}:metrics:durations:{stage}"

    @property
    def metric_index(self) -> str:
        """ZSET ``source|scope`` -> last write (ms), so readers find every series without SCAN."""
        return f"{self.fleet}:metrics:index"

    @property
    def metric_collector(self) -> str:
        """HASH: the Azure Monitor collector's state and last message (TTL: a few intervals)."""
        return f"{self.fleet}:metrics:collector"

    # --- autoscaling (symphony/engine/cooldown.py; docs/deploy.md) ---------------------------------
    def scale_cooldown(self, target: str) -> str:
        """STRING: server ms of the last scale action on ``target`` (a scale set:
        ``vmss/<subscription>/<resource group>/<name>``, lower case); TTL: the cooldown."""
        return f"{self.fleet}:scale:cooldown:{target}"

    # --- SLURM job accounting (symphony/engine/slurm_accounting.py; docs/slurm.md) ---------------
    @property
    def slurm_tags(self) -> str:
        """HASH tag -> JSON summary of the SLURM jobs recorded under the tag (pool, cluster, counts)."""
        return f"{self.fleet}:slurm:tags"

    def slurm_set(self, tag: str, state: str) -> str:
        """ZSET of SLURM job ids under ``tag``: ``ALL`` (score: submitted, ms) or one state set such
        as ``PENDING_AND_RUNNING`` or ``COMPLETED`` (score: when the job entered it, ms)."""
        return f"{self.fleet}:slurm:{tag}:{state}"

    def slurm_jobs(self, tag: str) -> str:
        """HASH SLURM job id -> JSON record (SLURM's state, reason, exit code, node, times)."""
        return f"{self.fleet}:slurm:{tag}:jobs"

    def slurm_lock(self, what: str) -> str:
        """STRING lock (with a TTL) of the process tracking a cluster's jobs or adapting a tag."""
        return f"{self.fleet}:slurm:lock:{what}"

    def origin_jobs(self, origin: str) -> str:
        """ZSET of the jobs (``session/stage:item``) that wrote key/values from one batch job
        (``origin``, e.g. ``slurm-<cluster>-<job id>``), score: last write (ms)."""
        return f"{self.fleet}:origin:{origin}"


DEFAULT_KEYS = Keys()


def slot_of(key: str) -> int:
    """The Redis Cluster hash slot of ``key`` (CRC16 of its hash tag, modulo 16384)."""
    from redis.crc import key_slot

    return key_slot(key.encode())
