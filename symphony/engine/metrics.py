"""Machine metrics in Redis: host CPU from the workers' heartbeats, scale-set CPU from Azure Monitor.

Two writers, one reader:

* **Host samples** (:class:`HostMetricsWriter`): every worker process offers its heartbeat's host
  CPU and memory; the first process of a host to do so in a time bucket (30 s by default) writes
  one member ``bucket|host|cpu|mem|cpus`` into its pool's series ``symphony:metrics:hosts:<pool>``
  (``host_metrics.lua``: dedup by host, trim by age, all in one call). A host running eight worker
  processes still has exactly one sample per bucket, and a process calls at most once per bucket.
* **Azure Monitor samples** (:func:`store_azure`, called by the collector in
  ``symphony.azure.monitor`` through ``Engine.store_azure``): one member per minute per scale
  set (``symphony:metrics:azure:<scale set>``) and per instance (``...:vm``). Each poll replaces
  the window it fetched (Azure revises its latest minutes), in one ``MULTI``.
* :func:`read_scale_set_cpu` (``Engine.scale_set_cpu``) returns Azure data when it is fresh,
  else the heartbeat samples grouped by pool, in two pipelined round trips; no ``SCAN``: every
  series is listed in the index ZSET ``symphony:metrics:index``.

Every key is bounded: series are trimmed by age and expire when nobody writes them; the index
drops entries not written for a day. ``docs/keys.md`` documents each key.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import redis

from symphony.spec import role_problem

from .keys import Keys
from .numbers import optional_number as _num

HOSTS, AZURE = "hosts", "azure"
SOURCE_AZURE, SOURCE_HEARTBEATS = "azure monitor", "worker heartbeats"
HOST_BUCKET_S = 30.0
HOST_RETENTION_S = 3 * 3600.0
AZURE_RETENTION_S = 6 * 3600.0
INDEX_KEEP_S = 24 * 3600.0  # the index forgets a series nobody wrote for a day
AZURE_FRESH_S = 600.0  # Azure data older than this (or 3 collector intervals) falls back to heartbeats
DEFAULT_POOL = "default"  # the scope of workers started without --pool
SEP = "|"


# --- what readers get ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ScaleSetCpu:
    """CPU of one VM scale set (from Azure Monitor) or one worker pool (from heartbeats)."""

    name: str
    source: str  # "azure monitor" | "worker heartbeats"
    current: float | None  # percent, the latest value; None when nothing recent
    points: tuple[tuple[float, float], ...]  # (unix time, percent), oldest first
    instances: int  # VMs reporting at the latest point (Azure) or hosts beating (heartbeats)


@dataclass(frozen=True)
class HostCpu:
    """One host's history, from the samples its worker processes wrote (one per bucket)."""

    host: str
    pool: str
    current: float | None  # host CPU percent at its latest sample
    memory: float | None  # host memory percent at its latest sample
    cpus: int | None
    last_seen: float | None  # unix time of the latest sample
    points: tuple[tuple[float, float], ...]  # (unix time, host CPU percent)


@dataclass(frozen=True)
class CollectorStatus:
    """What the Azure Monitor collector last said (from Redis, so any process can show it)."""

    state: str  # ok | degraded (some scale sets missing) | error (nothing collected; retrying)
    message: str
    at: float  # unix time it was written
    interval_s: float | None
    scale_sets: tuple[str, ...]


@dataclass(frozen=True)
class AzureSample:
    """One minute of one scale set (``instance == ""``) or one of its instances."""

    time: float  # unix time of the start of the minute
    scale_set: str
    instance: str = ""
    cpu: float | None = None  # Percentage CPU (average)
    disk_read: float | None = None  # Disk Read Bytes (total over the minute)
    disk_write: float | None = None  # Disk Write Bytes
    net_in: float | None = None  # Network In Total (bytes)
    net_out: float | None = None  # Network Out Total (bytes)
    instances: int | None = None  # for a scale-set sample: instances reporting CPU that minute
    region: str = ""

    @property
    def values(self) -> tuple[float | None, ...]:
        return (self.cpu, self.disk_read, self.disk_write, self.net_in, self.net_out)


# --- encoding ------------------------------------------------------------------------------------
def _fmt(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{float(value):.6g}" if abs(value) < 1e6 else f"{float(value):.0f}"


def _float(text: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _clean(text: str) -> str:
    """A host or instance name fit for a ``|``-separated member."""
    return "".join("_" if (c == SEP or c.isspace()) else c for c in str(text))[:200] or "?"


def pool_scope(pool: str | None) -> str:
    """The series scope of a pool: its name, or ``default`` for workers without a (valid) pool."""
    if pool and role_problem(pool) is None:
        return pool
    return DEFAULT_POOL


def scale_set_scope(name: str) -> str:
    """Azure scale-set names are letters, digits, ``_ . -``; anything else is replaced."""
    return "".join(c if (c.isalnum() or c in "_.-") else "_" for c in name)[:80] or "_"


def host_member(bucket_ms: int, host: str, sample: Mapping[str, Any]) -> str:
    return SEP.join((str(int(bucket_ms)), _clean(host), _fmt(_num(sample.get("host_cpu"))),
                     _fmt(_num(sample.get("host_mem"))), _fmt(_num(sample.get("cpus")))))



def parse_host_member(member: str) -> tuple[float, str, float | None, float | None, int | None] | None:
    parts = member.split(SEP)
    if len(parts) < 5:
        return None
    try:
        t = int(parts[0]) / 1000
    except ValueError:
        return None
    cpus = _float(parts[4])
    return t, parts[1], _float(parts[2]), _float(parts[3]), int(cpus) if cpus is not None else None


def azure_member(sample: AzureSample) -> str:
    head = [str(int(round(sample.time * 1000)))]
    if sample.instance:
        head.append(_clean(sample.instance))
    fields = head + [_fmt(v) for v in sample.values]
    if not sample.instance:
        fields.append(_fmt(sample.instances))
    return SEP.join(fields)


def parse_azure_member(member: str, scale_set: str, *, instance: bool) -> AzureSample | None:
    parts = member.split(SEP)
    if len(parts) < 7:  # time, 5 values and the instance name (per VM) or the instance count (scale set)
        return None
    try:
        t = int(parts[0]) / 1000
    except ValueError:
        return None
    if instance:
        name, values = parts[1], parts[2:7]
        count = None
    else:
        name, values = "", parts[1:6]
        n = _float(parts[6])
        count = int(n) if n is not None else None
    cpu, dr, dw, ni, no = (_float(v) for v in values)
    return AzureSample(time=t, scale_set=scale_set, instance=name, cpu=cpu, disk_read=dr, disk_write=dw,
                       net_in=ni, net_out=no, instances=count)


# --- writing host samples ------------------------------------------------------------------------
def record_host_sample(client: redis.Redis, keys: Keys, pool: str | None, host: str, bucket_ms: int,
                       sample: Mapping[str, Any], *, retention_s: float = HOST_RETENTION_S) -> bool:
    """Write ``host``'s sample for the time bucket starting at ``bucket_ms`` (server ms), unless
    another process of the same host already did. True if this call wrote it."""
    from .scripts import scripts

    scope = pool_scope(pool)
    member = host_member(bucket_ms, host, sample)
    reply = scripts().host_metrics(
        client, (keys.metric_series(HOSTS, scope), keys.metric_hosts_seen(scope), keys.metric_index),
        (_clean(host), int(bucket_ms), member, int(retention_s * 1000), f"{HOSTS}{SEP}{scope}",
         int(INDEX_KEEP_S * 1000)))
    return bool(int(reply))


class HostMetricsWriter:
    """The worker side: offer every heartbeat's sample; at most one call to Redis per time bucket.

    ``now_ms`` is the *server* time the heartbeat returned, so the processes of every machine
    agree on the buckets whatever their clocks say.
    """

    def __init__(self, client: redis.Redis, keys: Keys, pool: str | None, host: str, *,
                 interval_s: float = HOST_BUCKET_S, retention_s: float = HOST_RETENTION_S):
        self.client, self.keys = client, keys
        self.pool, self.host = pool, host
        self.interval_ms = max(1, int(interval_s * 1000))
        self.retention_s = retention_s
        self.last_bucket: int | None = None
        self.written = 0

    @property
    def enabled(self) -> bool:
        return self.interval_ms > 1

    def bucket(self, now_ms: int) -> int:
        return (int(now_ms) // self.interval_ms) * self.interval_ms

    def offer(self, now_ms: int, sample: Mapping[str, Any]) -> bool | None:
        """Record ``sample`` if this bucket was not offered yet. Returns None (nothing sent),
        True (written) or False (another process of this host had written it)."""
        if not self.enabled or sample.get("host_cpu") in (None, ""):
            return None
        bucket = self.bucket(now_ms)
        if bucket == self.last_bucket:
            return None
        wrote = record_host_sample(self.client, self.keys, self.pool, self.host, bucket, sample,
                                   retention_s=self.retention_s)
        self.last_bucket = bucket  # only once Redis has it: a failed call is retried next beat
        self.written += int(wrote)
        return wrote


# --- writing Azure samples -----------------------------------------------------------------------
def store_azure(client: redis.Redis, keys: Keys, scale_set: str, window: tuple[float, float],
                totals: Sequence[AzureSample] | None, instances: Sequence[AzureSample] | None, *,
                retention_s: float = AZURE_RETENTION_S, now: float | None = None) -> int:
    """Replace the samples of ``scale_set`` inside ``window`` (unix seconds, start inclusive, end
    exclusive) by the ones just fetched, trim by age and refresh the index, in one transaction.

    ``totals``/``instances`` of None leave that series alone (its query failed). Returns the
    number of members written.
    """
    now = time.time() if now is None else now
    scope = scale_set_scope(scale_set)
    start_ms, end_ms = int(window[0] * 1000), int(window[1] * 1000)
    cutoff = int((now - retention_s) * 1000)
    keep_ms = int(retention_s * 1000)
    written = 0
    with client.pipeline(transaction=True) as pipe:
        for part, samples in (("", totals), ("vm", instances)):
            if samples is None:
                continue
            key = keys.metric_series(AZURE, scope, part)
            pipe.zremrangebyscore(key, start_ms, f"({end_ms}")
            mapping = {azure_member(s): int(round(s.time * 1000)) for s in samples
                       if start_ms <= s.time * 1000 < end_ms and s.time * 1000 >= cutoff}
            if mapping:
                pipe.zadd(key, mapping)
                written += len(mapping)
            pipe.zremrangebyscore(key, "-inf", f"({cutoff}")
            pipe.pexpire(key, keep_ms)
        pipe.zadd(keys.metric_index, {f"{AZURE}{SEP}{scope}": int(now * 1000)})
        pipe.zremrangebyscore(keys.metric_index, "-inf", f"({int((now - INDEX_KEEP_S) * 1000)}")
        pipe.execute()
    return written


def write_collector_status(client: redis.Redis, keys: Keys, state: str, message: str, *,
                           interval_s: float | None, scale_sets: Iterable[str] = (), now: float | None = None) -> None:
    from .redaction import redact

    now = time.time() if now is None else now
    ttl = int(max(300.0, 3 * (interval_s or 60.0)) * 1000)
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.metric_collector)
        pipe.hset(keys.metric_collector, mapping={
            "state": state, "message": redact(message)[:1000], "at": f"{now:.3f}",
            "interval": "" if interval_s is None else f"{interval_s:g}",
            "scale_sets": ",".join(sorted(scale_sets))[:4000]})
        pipe.pexpire(keys.metric_collector, ttl)
        pipe.execute()


def _collector_status(raw: Mapping[str, str] | None) -> CollectorStatus | None:
    if not raw:
        return None
    return CollectorStatus(state=raw.get("state", "?"), message=raw.get("message", ""),
                           at=_num(raw.get("at")) or 0.0, interval_s=_num(raw.get("interval")),
                           scale_sets=tuple(s for s in raw.get("scale_sets", "").split(",") if s))


def read_collector_status(client: redis.Redis, keys: Keys) -> CollectorStatus | None:
    return _collector_status(client.hgetall(keys.metric_collector))


# --- reading -------------------------------------------------------------------------------------
def _first_round(client: redis.Redis, keys: Keys) -> tuple[float, list[tuple[str, str, float]], CollectorStatus | None]:
    with client.pipeline(transaction=False) as pipe:
        pipe.execute_command("TIME")  # a cluster pipeline refuses pipe.time()
        pipe.zrange(keys.metric_index, 0, -1, withscores=True)
        pipe.hgetall(keys.metric_collector)
        server_time, index, status = pipe.execute()
    now = server_time[0] + server_time[1] / 1_000_000
    entries = []
    for member, score in index:
        source, _, scope = member.partition(SEP)
        if scope:
            entries.append((source, scope, score / 1000))
    return now, entries, _collector_status(status)


def azure_fresh_s(status: CollectorStatus | None) -> float:
    interval = status.interval_s if status and status.interval_s else 60.0
    return max(AZURE_FRESH_S, 3 * interval)


def read_scale_set_cpu(client: redis.Redis, keys: Keys, window_s: float = 3600.0) -> tuple[ScaleSetCpu, ...]:
    """Azure Monitor's scale-set CPU when any is fresh, else the worker heartbeats' host CPU by pool."""
    now, entries, status = _first_round(client, keys)
    fresh = now - azure_fresh_s(status)
    azure = sorted(scope for source, scope, written in entries if source == AZURE and written >= fresh)
    pools = sorted(scope for source, scope, written in entries if source == HOSTS and written >= now - window_s)
    since = int((now - window_s) * 1000)
    chosen = [(AZURE, s) for s in azure] if azure else [(HOSTS, p) for p in pools]
    if not chosen:
        return ()
    with client.pipeline(transaction=False) as pipe:
        for source, scope in chosen:
            pipe.zrangebyscore(keys.metric_series(source, scope), since, "+inf")
        replies = pipe.execute()
    out = []
    for (source, scope), members in zip(chosen, replies):
        if source == AZURE:
            out.append(_azure_cpu(scope, members))
        else:
            out.append(_pool_cpu(scope, members, now))
    return tuple(out)


def _azure_cpu(scale_set: str, members: list[str]) -> ScaleSetCpu:
    samples = [s for s in (parse_azure_member(m, scale_set, instance=False) for m in members) if s is not None]
    samples.sort(key=lambda s: s.time)
    points = tuple((s.time, round(s.cpu, 2)) for s in samples if s.cpu is not None)
    instances = 0
    for s in reversed(samples):
        if s.cpu is not None:
            instances = s.instances or 0
            break
    return ScaleSetCpu(name=scale_set, source=SOURCE_AZURE, current=points[-1][1] if points else None,
                       points=points, instances=instances)


def _host_rows(members: Iterable[str]) -> list[tuple[float, str, float | None, float | None, int | None]]:
    rows = [row for row in (parse_host_member(m) for m in members) if row is not None]
    rows.sort(key=lambda row: (row[0], row[1]))
    return rows


def _recent_cutoff(times: Sequence[float], now: float) -> float | None:
    """The oldest time a host's latest sample may have to count as current: the two newest
    buckets (the newest may still be filling), and only if the pool is still writing."""
    distinct = sorted(set(times))
    if not distinct:
        return None
    spacing = distinct[-1] - distinct[-2] if len(distinct) > 1 else HOST_BUCKET_S
    spacing = max(1.0, min(spacing, 600.0))
    if now - distinct[-1] > max(120.0, 3 * spacing):
        return None  # the pool stopped writing: there is history but no current value
    return distinct[-2] if len(distinct) > 1 else distinct[-1]


def _pool_cpu(pool: str, members: list[str], now: float) -> ScaleSetCpu:
    rows = _host_rows(members)
    by_bucket: dict[float, list[float]] = {}
    for t, _host, cpu, _mem, _cpus in rows:
        if cpu is not None:
            by_bucket.setdefault(t, []).append(cpu)
    points = tuple((t, round(sum(v) / len(v), 2)) for t, v in sorted(by_bucket.items()))
    cutoff = _recent_cutoff([row[0] for row in rows], now)
    latest: dict[str, float] = {}
    if cutoff is not None:
        for t, host, cpu, _mem, _cpus in rows:
            if t >= cutoff and cpu is not None:
                latest[host] = cpu  # rows are time-ordered: the last one wins
    current = round(sum(latest.values()) / len(latest), 2) if latest else None
    return ScaleSetCpu(name=pool, source=SOURCE_HEARTBEATS, current=current, points=points, instances=len(latest))


def read_host_cpu(client: redis.Redis, keys: Keys, window_s: float = 3600.0,
                  pool: str | None = None) -> tuple[HostCpu, ...]:
    """Every host's history in the window, from the worker heartbeats' samples."""
    now, entries, _ = _first_round(client, keys)
    pools = sorted(scope for source, scope, written in entries
                   if source == HOSTS and written >= now - window_s and (pool is None or scope == pool_scope(pool)))
    if not pools:
        return ()
    since = int((now - window_s) * 1000)
    with client.pipeline(transaction=False) as pipe:
        for scope in pools:
            pipe.zrangebyscore(keys.metric_series(HOSTS, scope), since, "+inf")
        replies = pipe.execute()
    out = []
    for scope, members in zip(pools, replies):
        hosts: dict[str, list] = {}
        for row in _host_rows(members):
            hosts.setdefault(row[1], []).append(row)
        for host, rows in sorted(hosts.items()):
            t, _, cpu, mem, cpus = rows[-1]
            stale = now - t > 600.0
            out.append(HostCpu(host=host, pool=scope, current=None if stale else cpu, memory=None if stale else mem,
                               cpus=cpus, last_seen=t,
                               points=tuple((r[0], r[2]) for r in rows if r[2] is not None)))
    return tuple(out)
