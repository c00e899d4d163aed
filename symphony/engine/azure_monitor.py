"""VM scale-set metrics from Azure Monitor, with no VM extension (seed 002's metrics logger).

Every interval the collector

1. finds the scale sets (once, then every ten minutes or after a 404): the named ones, or every
   scale set of the resource group, with one ARM ``GET`` each (or one ``LIST``), which also tells
   each one's region;
2. reads, per region and per 50 scale sets, one ``metrics:getBatch`` call for the scale sets'
   totals and one split by instance (``VMName eq '*'``), through ``azure-monitor-querymetrics``'
   ``MetricsClient.query_resources`` on the regional endpoint: Percentage CPU (average), Disk
   Read/Write Bytes and Network In/Out Total (totals), one point a minute over the last 15;
3. replaces that window in Redis (:func:`engine.metrics.store_azure`) and appends the minutes that
   Azure will no longer revise to JSON Lines and/or CSV files for analysis.

Failures never end it: no configuration means the collector is off (and the console shows the
workers' host CPU instead); expired credentials, 403, throttling (429, honouring Retry-After), a
missing scale set or resource group, and network errors each give one clear message, then a retry
with backoff. Messages pass through :func:`engine.redact`; Azure client secrets from the
environment are registered as secrets before anything can print them.

The Azure packages are imported only when a collector is built, so the engine (and the workers)
work without the ``azure`` extra.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

from .errors import ConfigError
from .metrics import AZURE_RETENTION_S, AzureSample, store_azure, write_collector_status
from .redaction import redact, register_environment_secrets

log = logging.getLogger("symphony.metrics")

NAMESPACE = "Microsoft.Compute/virtualMachineScaleSets"
# (Azure metric name, AzureSample field, aggregation): the ones seed 002 logged
METRICS = (("Percentage CPU", "cpu", "average"), ("Disk Read Bytes", "disk_read", "total"),
           ("Disk Write Bytes", "disk_write", "total"), ("Network In Total", "net_in", "total"),
           ("Network Out Total", "net_out", "total"))
INSTANCE_DIMENSION = "VMName"
ARM_ENDPOINT = "https://management.azure.com"
ARM_API_VERSION = "2024-07-01"  # Microsoft.Compute virtualMachineScaleSets GET / LIST
METRICS_HOST = "metrics.monitor.azure.com"  # regional endpoint: https://<region>.metrics.monitor.azure.com
BATCH_MAX = 50  # resource ids per metrics:getBatch call
DISCOVERY_EVERY_S = 600.0
MAX_BACKOFF_S = 900.0
FATAL = ("auth", "forbidden", "throttled", "network")  # problems that every other call would hit too
INSTALL_HINT = "the Azure packages are not installed: pip install 'redis-symphony[azure]'"

OK, DEGRADED, ERROR = "ok", "degraded", "error"
# problem kinds
AUTH, FORBIDDEN, THROTTLED, NOT_FOUND, NETWORK, SERVICE, EMPTY, FAILED = (
    "auth", "forbidden", "throttled", "not_found", "network", "service", "empty", "error")


# --- configuration -------------------------------------------------------------------------------
def _duration(text: str | float | int | None, default: float) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``6h`` or ``2d``."""
    if text in (None, ""):
        return default
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if s[-1] in units:
            return float(s[:-1]) * units[s[-1]]
        return float(s)
    except (ValueError, IndexError):
        raise ConfigError(f"{text!r} is not a duration (e.g. 90, 90s, 15m, 6h)") from None


@dataclass(frozen=True)
class AzureMonitorConfig:
    """Where to read metrics from, and where to put them.

    Environment (each overridden by the CLI flag of the same meaning): ``SYMPHONY_AZURE_SUBSCRIPTION``
    (or ``AZURE_SUBSCRIPTION_ID``), ``SYMPHONY_AZURE_RESOURCE_GROUP``, ``SYMPHONY_AZURE_SCALE_SETS``
    (comma-separated; empty: every scale set of the group), ``SYMPHONY_AZURE_REGION`` (skip the
    region lookup), ``SYMPHONY_AZURE_INTERVAL``, ``SYMPHONY_AZURE_RETENTION``.
    """

    subscription: str = ""
    resource_group: str = ""
    scale_sets: tuple[str, ...] = ()  # empty: every scale set of the resource group
    region: str = ""  # e.g. westeurope; empty: each scale set's own location (from ARM)
    interval_s: float = 60.0
    lookback_s: float = 900.0  # each poll re-reads this much (Azure revises its latest minutes)
    retention_s: float = AZURE_RETENTION_S
    settle_s: float = 300.0  # minutes younger than this are not written to files yet
    max_instances: int = 1000  # time series per scale set in the per-instance query ("top")
    jsonl: str | None = None
    csv: str | None = None
    redis: bool = True
    arm_endpoint: str = ARM_ENDPOINT
    metrics_host: str = METRICS_HOST

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "AzureMonitorConfig":
        env = os.environ if env is None else env
        names = env.get("SYMPHONY_AZURE_SCALE_SETS", "")
        values: dict[str, Any] = {
            "subscription": env.get("SYMPHONY_AZURE_SUBSCRIPTION") or env.get("AZURE_SUBSCRIPTION_ID", ""),
            "resource_group": env.get("SYMPHONY_AZURE_RESOURCE_GROUP", ""),
            "scale_sets": tuple(n.strip() for n in names.split(",") if n.strip()),
            "region": env.get("SYMPHONY_AZURE_REGION", ""),
            "interval_s": _duration(env.get("SYMPHONY_AZURE_INTERVAL"), 60.0),
            "retention_s": _duration(env.get("SYMPHONY_AZURE_RETENTION"), AZURE_RETENTION_S),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "scale_sets" in overrides and overrides["scale_sets"] is not None:
            values["scale_sets"] = tuple(overrides["scale_sets"])
        return cls(**values).checked()

    def checked(self) -> "AzureMonitorConfig":
        if self.interval_s < 10:
            raise ConfigError("the Azure Monitor interval must be at least 10 seconds (metrics come by the minute)")
        if self.lookback_s < 120:
            raise ConfigError("the look-back window must be at least 2 minutes")
        if self.retention_s < 600:
            raise ConfigError("the retention must be at least 10 minutes")
        if self.max_instances < 1:
            raise ConfigError("max instances must be at least 1")
        return self

    @property
    def missing(self) -> tuple[str, ...]:
        """What is not configured (empty: the collector can run)."""
        out = []
        if not self.subscription:
            out.append("subscription (--subscription or SYMPHONY_AZURE_SUBSCRIPTION / AZURE_SUBSCRIPTION_ID)")
        if not self.resource_group:
            out.append("resource group (--resource-group or SYMPHONY_AZURE_RESOURCE_GROUP)")
        return tuple(out)

    @property
    def configured(self) -> bool:
        return not self.missing

    @property
    def off_reason(self) -> str:
        return ("Azure Monitor collector is off: no " + " and no ".join(self.missing) +
                "; the console shows the workers' host CPU instead") if self.missing else ""

    def describe(self) -> str:
        sets = ", ".join(self.scale_sets) if self.scale_sets else "every scale set"
        return f"{sets} in resource group {self.resource_group} (subscription {self.subscription})"


@dataclass(frozen=True)
class ScaleSet:
    name: str
    id: str
    location: str
    capacity: int | None = None


@dataclass(frozen=True)
class CollectProblem:
    kind: str
    message: str
    retry_after_s: float | None = None  # what the service asked for (429 Retry-After)


@dataclass
class CollectResult:
    """What one poll did."""

    samples: list[AzureSample] = field(default_factory=list)
    scale_sets: tuple[str, ...] = ()
    problems: list[CollectProblem] = field(default_factory=list)
    written: int = 0  # members written to Redis
    rows: int = 0  # rows appended to files

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def collected(self) -> bool:
        return bool(self.samples)

    def latest(self) -> dict[str, AzureSample]:
        """The newest scale-set sample with a CPU value, by scale set."""
        out: dict[str, AzureSample] = {}
        for s in self.samples:
            if not s.instance and s.cpu is not None and (s.scale_set not in out or s.time > out[s.scale_set].time):
                out[s.scale_set] = s
        return out


# --- errors --------------------------------------------------------------------------------------
def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    line = next((t.strip() for t in text if t.strip()), type(exc).__name__)
    return redact(line[:limit])


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the service asks us to wait: ``retry-after-ms``, ``x-ms-retry-after-ms``, or
    ``Retry-After`` in seconds or as an HTTP date."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) / 1000)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def classify(exc: BaseException, what: str) -> CollectProblem:
    """One clear message for an error raised while ``what`` (e.g. "reading metrics of vmss-a")."""
    try:
        from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                           ServiceRequestError, ServiceResponseError)
    except ImportError:  # pragma: no cover - the collector cannot be built without them
        return CollectProblem(FAILED, f"{what}: {_first_line(exc)}")
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    detail = _first_line(exc)
    headers = getattr(response, "headers", None)
    if status == 401 or (isinstance(exc, ClientAuthenticationError) and status is None):
        return CollectProblem(AUTH, f"Azure credentials are missing, were rejected or have expired, while {what}: "
                                    f"{detail}. Sign in again (az login), renew the service principal's secret "
                                    "(AZURE_CLIENT_SECRET) or check the managed identity")
    if status == 403:
        return CollectProblem(FORBIDDEN, f"the Azure identity is not allowed (403) to do this, while {what}: "
                                         f"{detail}. Give it the 'Monitoring Reader' role (and 'Reader' to list "
                                         "scale sets) on the resource group")
    if status == 429:
        return CollectProblem(THROTTLED, f"Azure is throttling us (429), while {what}", retry_after_s(headers))
    if status == 404 or isinstance(exc, ResourceNotFoundError):
        return CollectProblem(NOT_FOUND, f"not found, while {what}: {detail}")
    if isinstance(status, int) and status >= 500:
        return CollectProblem(SERVICE, f"Azure answered {status}, while {what}: {detail}", retry_after_s(headers))
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return CollectProblem(NETWORK, f"cannot reach Azure, while {what}: {detail}")
    if isinstance(exc, HttpResponseError):
        return CollectProblem(FAILED, f"Azure answered {status}, while {what}: {detail}")
    return CollectProblem(FAILED, f"unexpected error while {what}: {type(exc).__name__}: {detail}")


# --- parsing -------------------------------------------------------------------------------------
def _resource_of(metric_id: str) -> str:
    marker = "/providers/microsoft.insights/metrics/"
    i = (metric_id or "").lower().find(marker)
    return metric_id[:i].lower() if i >= 0 else ""


def _dimension(metadata: Mapping[str, str], name: str) -> str:
    """Azure Monitor returns dimension names lowercased (``vmname``); match them in any case."""
    for key, value in (metadata or {}).items():
        if key.lower() == name.lower():
            return value or ""
    return ""


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


def samples_from_results(results: Sequence[Any], chunk: Sequence[ScaleSet], *,
                         per_instance: bool) -> list[AzureSample]:
    """Turn ``MetricsClient.query_resources`` results into one sample per minute and scope.

    The result list carries no resource id; each metric's id starts with its resource's id, so
    results are matched by that (and by position only as a last resort).
    """
    by_id = {s.id.lower(): s for s in chunk}
    by_name = {s.name.lower(): s for s in chunk}
    agg = {name: (attr, how) for name, attr, how in METRICS}
    rows: dict[tuple[str, str, float], dict[str, Any]] = {}
    for position, result in enumerate(results):
        owner: ScaleSet | None = None
        for metric in result.metrics:
            rid = _resource_of(metric.id)
            owner = by_id.get(rid) or by_name.get(rid.rsplit("/", 1)[-1]) if rid else None
            if owner:
                break
        if owner is None and len(results) == len(chunk):
            owner = chunk[position]
        if owner is None:
            log.debug("metrics result without a known resource id; skipped")
            continue
        for metric in result.metrics:
            if metric.name not in agg:
                continue
            attr, how = agg[metric.name]
            for series in metric.timeseries:
                instance = _dimension(series.metadata_values, INSTANCE_DIMENSION) if per_instance else ""
                if per_instance and not instance:
                    continue
                for point in series.data:
                    value = getattr(point, how, None)
                    if value is None:
                        continue
                    key = (owner.name, instance, _epoch(point.timestamp))
                    row = rows.setdefault(key, {"region": owner.location})
                    row[attr] = float(value)
    samples = [AzureSample(time=t, scale_set=name, instance=inst, **row) for (name, inst, t), row in rows.items()]
    samples.sort(key=lambda s: (s.scale_set, s.time, s.instance))
    return samples


def with_instance_counts(totals: list[AzureSample], instances: list[AzureSample] | None) -> list[AzureSample]:
    if instances is None:
        return totals
    counts: dict[tuple[str, float], int] = {}
    for s in instances:
        if s.cpu is not None:
            counts[(s.scale_set, s.time)] = counts.get((s.scale_set, s.time), 0) + 1
    return [replace(s, instances=counts.get((s.scale_set, s.time), s.instances)) for s in totals]


# --- files for analysis --------------------------------------------------------------------------
FILE_FIELDS = ("time", "ts", "scale_set", "instance", "region", "cpu_percent", "disk_read_bytes",
               "disk_write_bytes", "network_in_bytes", "network_out_bytes", "instances")


def sample_row(s: AzureSample) -> dict[str, Any]:
    return {"time": datetime.fromtimestamp(s.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "ts": int(s.time),
            "scale_set": s.scale_set, "instance": s.instance or None, "region": s.region or None,
            "cpu_percent": s.cpu, "disk_read_bytes": s.disk_read, "disk_write_bytes": s.disk_write,
            "network_in_bytes": s.net_in, "network_out_bytes": s.net_out,
            "instances": None if s.instance else s.instances}


class FileSink:
    """Appends settled minutes to JSON Lines and/or CSV files, each minute once.

    Azure revises its latest minutes, so only minutes older than ``settle_s`` are written, and
    only those after the newest one already in the file (read back from its tail at start), so
    restarts and overlapping polls write no duplicates.
    """

    TAIL_BYTES = 1 << 20

    def __init__(self, jsonl: str | None, csv_path: str | None, settle_s: float):
        self.jsonl, self.csv = jsonl, csv_path
        self.settle_s = settle_s
        self.done: dict[str, float] = {}
        for path in (jsonl, csv_path):
            if path:
                os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
                for name, ts in self._tail(path).items():
                    self.done[name] = max(self.done.get(name, 0.0), ts)

    @property
    def enabled(self) -> bool:
        return bool(self.jsonl or self.csv)

    def _tail(self, path: str) -> dict[str, float]:
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - self.TAIL_BYTES))
                data = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return {}
        lines = data.splitlines()
        if len(data) >= self.TAIL_BYTES and lines:
            lines = lines[1:]  # the first line may be cut
        out: dict[str, float] = {}
        if path == self.csv:
            header = None
            try:
                with open(path, newline="", encoding="utf-8") as fh:
                    header = next(csv.reader(fh), None)
            except OSError:
                header = None
            if not header or "ts" not in header or "scale_set" not in header:
                return {}
            it, iss = header.index("ts"), header.index("scale_set")
            for row in csv.reader(io.StringIO("\n".join(lines))):
                if len(row) > max(it, iss) and row[it].isdigit():
                    out[row[iss]] = max(out.get(row[iss], 0.0), float(row[it]))
        else:
            for line in lines:
                try:
                    row = json.loads(line)
                    out[row["scale_set"]] = max(out.get(row["scale_set"], 0.0), float(row["ts"]))
                except (ValueError, KeyError, TypeError):
                    continue
        return out

    def write(self, samples: Iterable[AzureSample], now: float) -> int:
        if not self.enabled:
            return 0
        limit = now - self.settle_s
        fresh = [s for s in samples if s.time + 60 <= limit and s.time > self.done.get(s.scale_set, 0.0)]
        if not fresh:
            return 0
        fresh.sort(key=lambda s: (s.time, s.scale_set, s.instance))
        rows = [sample_row(s) for s in fresh]
        if self.jsonl:
            with open(self.jsonl, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
        if self.csv:
            new = not os.path.exists(self.csv) or os.path.getsize(self.csv) == 0
            with open(self.csv, "a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=FILE_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        for s in fresh:
            self.done[s.scale_set] = max(self.done.get(s.scale_set, 0.0), s.time)
        return len(rows)


# --- the Azure side ------------------------------------------------------------------------------
def register_azure_secrets(env: Mapping[str, str] | None = None) -> None:
    """Mask the Azure client secrets of the environment (every variable of SECRET_ENVIRONMENT)."""
    register_environment_secrets(env)


def default_credential() -> Any:
    """``DefaultAzureCredential``: environment service principal, workload or managed identity,
    Azure CLI, ... (never interactive). Client secrets from the environment are registered first."""
    register_azure_secrets()
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


class AzureClients:
    """The ARM discovery calls and the regional metrics clients, sharing one credential and
    (in tests) one transport. azure-core's own retries are off: the collector retries itself,
    so that it can say what happened once and honour Retry-After."""

    def __init__(self, config: AzureMonitorConfig, credential: Any = None, transport: Any = None):
        try:
            from azure.core import PipelineClient
            from azure.core.pipeline import policies
            from azure.monitor.querymetrics import MetricsClient  # noqa: F401 - fail early if missing
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        self.config = config
        self.credential = credential if credential is not None else default_credential()
        self.transport = transport
        self._metrics: dict[str, Any] = {}
        arm = config.arm_endpoint.rstrip("/")
        pipeline = [policies.RequestIdPolicy(), policies.HeadersPolicy(),
                    policies.UserAgentPolicy(sdk_moniker="redis-symphony"), policies.ProxyPolicy(),
                    policies.ContentDecodePolicy(), policies.RedirectPolicy(), policies.RetryPolicy(retry_total=0),
                    policies.BearerTokenCredentialPolicy(self.credential, arm + "/.default"),
                    policies.NetworkTraceLoggingPolicy(), policies.HttpLoggingPolicy()]
        kwargs: dict[str, Any] = {"transport": transport} if transport is not None else {}
        self.arm = PipelineClient(base_url=arm, policies=pipeline, **kwargs)

    # ARM -----------------------------------------------------------------------------------------
    def _arm_get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.core.rest import HttpRequest

        request = HttpRequest("GET", path if path.startswith("http") else self.arm.format_url(path), params=params)
        response = self.arm.send_request(request, connection_timeout=10, read_timeout=60)
        if response.status_code == 404:
            raise ResourceNotFoundError(response=response)
        if response.status_code != 200:
            raise HttpResponseError(response=response)
        return response.json()

    def _set_path(self, name: str = "") -> str:
        c = self.config
        base = (f"/subscriptions/{quote(c.subscription, safe='')}/resourceGroups/{quote(c.resource_group, safe='')}"
                f"/providers/Microsoft.Compute/virtualMachineScaleSets")
        return f"{base}/{quote(name, safe='')}" if name else base

    @staticmethod
    def _scale_set(body: Mapping[str, Any]) -> ScaleSet:
        capacity = (body.get("sku") or {}).get("capacity")
        location = str(body.get("location", "")).replace(" ", "").lower()
        return ScaleSet(name=body["name"], id=body["id"], location=location,
                        capacity=int(capacity) if capacity is not None else None)

    def get_scale_set(self, name: str) -> ScaleSet:
        return self._scale_set(self._arm_get(self._set_path(name), {"api-version": ARM_API_VERSION}))

    def list_scale_sets(self) -> list[ScaleSet]:
        out: list[ScaleSet] = []
        body = self._arm_get(self._set_path(), {"api-version": ARM_API_VERSION})
        pages = 0
        while True:
            out.extend(self._scale_set(v) for v in body.get("value", []))
            link = body.get("nextLink")
            pages += 1
            if not link or pages >= 100:
                break
            body = self._arm_get(link)
        return out

    # metrics -------------------------------------------------------------------------------------
    def metrics_client(self, region: str) -> Any:
        from azure.monitor.querymetrics import MetricsClient

        if region not in self._metrics:
            kwargs: dict[str, Any] = {"retry_total": 0}
            if self.transport is not None:
                kwargs["transport"] = self.transport
            self._metrics[region] = MetricsClient(f"https://{region}.{self.config.metrics_host}", self.credential,
                                                  **kwargs)
        return self._metrics[region]

    def query(self, region: str, chunk: Sequence[ScaleSet], start: datetime, end: datetime, *,
              per_instance: bool) -> list[Any]:
        client = self.metrics_client(region)
        extra: dict[str, Any] = {}
        if per_instance:
            extra = {"filter": f"{INSTANCE_DIMENSION} eq '*'", "max_results": self.config.max_instances}
        return client.query_resources(
            resource_ids=[s.id for s in chunk], metric_namespace=NAMESPACE, metric_names=[m[0] for m in METRICS],
            timespan=(start, end), granularity=timedelta(minutes=1), aggregations=["Average", "Total"],
            connection_timeout=10, read_timeout=60, **extra)

    def close(self) -> None:
        for client in self._metrics.values():
            try:
                client.close()
            except Exception:
                pass
        try:
            self.arm.close()
        except Exception:
            pass


# --- the collector -------------------------------------------------------------------------------
class AzureCollector:
    """Polls Azure Monitor and stores what it reads. Run it with :meth:`run` (the CLI), in a
    thread with :meth:`start`/:meth:`stop` (the console), or one poll at a time with :meth:`poll`.

    ``engine`` may be None (files only). ``credential``/``transport`` are for tests and special
    setups; by default ``DefaultAzureCredential`` and azure-core's requests transport are used.
    """

    def __init__(self, engine: Any, config: AzureMonitorConfig, *, credential: Any = None, transport: Any = None,
                 clock: Callable[[], float] = time.time, on_message: Callable[[str, str], None] | None = None):
        if config.missing:
            raise ConfigError(config.off_reason)
        self.engine = engine if config.redis else None
        self.config = config
        self.clock = clock
        self.on_message = on_message
        self.clients = AzureClients(config, credential=credential, transport=transport)
        self.files = FileSink(config.jsonl, config.csv, config.settle_s)
        self.scale_sets: dict[str, ScaleSet] = {}
        self.missing: dict[str, str] = {}  # configured names that ARM did not find -> message
        self._discovered_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.state = "starting"
        self.message = ""
        self._said: str | None = None  # the last problem we reported (we say each one once)
        self.last_result: CollectResult | None = None

    @classmethod
    def from_env(cls, engine: Any, env: Mapping[str, str] | None = None, **kwargs: Any) -> "AzureCollector | None":
        """A collector configured from the environment, or None when Azure is not configured
        (the console then shows the workers' host CPU and says so)."""
        config = AzureMonitorConfig.from_env(env)
        if config.missing:
            return None
        return cls(engine, config, **kwargs)

    # messages ------------------------------------------------------------------------------------
    def _say(self, level: int, message: str) -> None:
        message = redact(message)
        log.log(level, "%s", message)
        if self.on_message is not None:
            try:
                self.on_message(logging.getLevelName(level).lower(), message)
            except Exception:
                pass

    def _report(self, result: CollectResult, retry_in: float | None) -> None:
        problems = result.problems
        if problems:
            first = problems[0]
            extra = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            when = f"; retrying in {retry_in:.0f}s" if retry_in is not None else ""
            if first.kind == THROTTLED and first.retry_after_s is not None:
                when = (f"; retrying in {retry_in:.0f}s as Retry-After asks" if retry_in is not None else
                        f"; Azure asks to wait {first.retry_after_s:.0f}s before the next try (Retry-After)")
            message = first.message + extra + when
            key = "|".join(sorted(f"{p.kind}:{p.message}" for p in problems))
            if key != self._said:
                self._said = key
                self._say(logging.WARNING, message)
            else:
                log.debug("%s", redact(message))
            self.state, self.message = (DEGRADED if result.collected else ERROR), message
        else:
            if self._said is not None:
                self._say(logging.INFO, f"Azure Monitor: collecting again ({len(result.scale_sets)} scale set(s))")
                self._said = None
            self.state = OK
            self.message = f"collecting {len(result.scale_sets)} scale set(s): " + ", ".join(result.scale_sets)
        if self.engine is not None:
            try:
                write_collector_status(self.engine.client, self.engine.keys, self.state, self.message,
                                       interval_s=self.config.interval_s, scale_sets=result.scale_sets,
                                       now=self.clock())
            except Exception as exc:
                log.debug("could not write the collector status: %s", redact(exc))

    # discovery -----------------------------------------------------------------------------------
    def _discovery_due(self, now: float) -> bool:
        return (self._discovered_at is None or now - self._discovered_at >= DISCOVERY_EVERY_S
                or bool(self.missing) or not self.scale_sets)

    def discover(self, result: CollectResult) -> None:
        c = self.config
        found: dict[str, ScaleSet] = {}
        missing: dict[str, str] = {}
        if c.scale_sets:
            for name in c.scale_sets:
                try:
                    found[name] = self.clients.get_scale_set(name)
                except Exception as exc:
                    problem = classify(exc, f"looking up scale set {name}")
                    if problem.kind == NOT_FOUND:
                        missing[name] = (f"scale set {name} not found in resource group {c.resource_group} "
                                         f"(subscription {c.subscription})")
                        result.problems.append(CollectProblem(NOT_FOUND, missing[name]))
                    else:
                        result.problems.append(problem)
                        if problem.kind in FATAL:
                            return  # the others would fail the same way
        else:
            try:
                found = {s.name: s for s in self.clients.list_scale_sets()}
            except Exception as exc:
                problem = classify(exc, f"listing the scale sets of resource group {c.resource_group}")
                if problem.kind == NOT_FOUND:
                    problem = CollectProblem(NOT_FOUND, f"resource group {c.resource_group} not found in subscription "
                                                 f"{c.subscription}")
                result.problems.append(problem)
                return
            if not found:
                result.problems.append(CollectProblem(EMPTY, f"resource group {c.resource_group} has no VM scale sets"))
        if c.region:
            found = {n: replace(s, location=c.region) for n, s in found.items()}
        self.scale_sets, self.missing = found, missing
        self._discovered_at = self.clock()

    # one poll ------------------------------------------------------------------------------------
    def poll(self) -> CollectResult:
        """Discover (when due), read the window, store it. Never raises for Azure problems."""
        result = CollectResult()
        now = self.clock()
        if self._discovery_due(now):
            self.discover(result)
            if any(p.kind in FATAL for p in result.problems):
                return result  # the metrics calls would fail the same way
        if not self.scale_sets:
            return result
        end = datetime.fromtimestamp(now - now % 60, timezone.utc)  # whole minutes
        start = end - timedelta(seconds=self.config.lookback_s)
        by_region: dict[str, list[ScaleSet]] = {}
        for s in sorted(self.scale_sets.values(), key=lambda s: s.name):
            by_region.setdefault(s.location, []).append(s)
        fatal = False
        for region, sets in sorted(by_region.items()):
            for i in range(0, len(sets), BATCH_MAX):
                if fatal:
                    break
                fatal = self._poll_chunk(region, sets[i:i + BATCH_MAX], start, end, result)
        result.scale_sets = tuple(sorted({s.scale_set for s in result.samples}))
        if self.files.enabled:
            try:
                result.rows = self.files.write(result.samples, self.clock())
            except OSError as exc:
                result.problems.append(CollectProblem(FAILED, f"cannot write the metrics files: {redact(exc)}"))
        return result

    def _poll_chunk(self, region: str, chunk: list[ScaleSet], start: datetime, end: datetime,
                    result: CollectResult) -> bool:
        """Read one batch; on a 404 (one missing scale set fails a whole batch) read them one by
        one to find which. Returns True when the remaining batches would fail the same way."""
        names = ", ".join(s.name for s in chunk)
        fetched: dict[bool, list[AzureSample] | None] = {}
        for per_instance in (False, True):
            what = f"reading {'per-instance ' if per_instance else ''}metrics of {names} ({region})"
            try:
                results = self.clients.query(region, chunk, start, end, per_instance=per_instance)
                fetched[per_instance] = samples_from_results(results, chunk, per_instance=per_instance)
            except Exception as exc:
                problem = classify(exc, what)
                if problem.kind == NOT_FOUND and len(chunk) > 1:
                    for one in chunk:
                        self._poll_chunk(region, [one], start, end, result)
                    return False
                if problem.kind == NOT_FOUND:
                    self.missing[chunk[0].name] = (f"scale set {chunk[0].name} has no metrics in Azure Monitor "
                                                   f"(deleted, or in another region than {region}?)")
                    self.scale_sets.pop(chunk[0].name, None)
                    result.problems.append(CollectProblem(NOT_FOUND, self.missing[chunk[0].name]))
                    return False
                result.problems.append(problem)
                fetched[per_instance] = None
                if problem.kind in FATAL:
                    return True
        totals, instances = fetched.get(False), fetched.get(True)
        if totals is not None:
            totals = with_instance_counts(totals, instances)
        for s in chunk:
            mine_totals = None if totals is None else [x for x in totals if x.scale_set == s.name]
            mine_instances = None if instances is None else [x for x in instances if x.scale_set == s.name]
            result.samples.extend(mine_totals or [])
            result.samples.extend(mine_instances or [])
            if self.engine is not None and (mine_totals is not None or mine_instances is not None):
                try:
                    result.written += store_azure(self.engine.client, self.engine.keys, s.name,
                                                  (start.timestamp(), end.timestamp()), mine_totals, mine_instances,
                                                  retention_s=self.config.retention_s, now=self.clock())
                except Exception as exc:
                    from .connection import describe_error

                    result.problems.append(CollectProblem(FAILED,
                                                          f"cannot write metrics to Redis: {describe_error(exc)}"))
                    return True
        return False

    # the loop ------------------------------------------------------------------------------------
    def next_delay(self, result: CollectResult) -> float:
        """The normal interval after a clean poll; exponential backoff (with jitter) after a
        failed one, never shorter than what a 429 asked for."""
        if not result.problems or (result.collected and all(p.kind in (NOT_FOUND, EMPTY) for p in result.problems)):
            self.failures = 0  # some scale sets are missing, the others are fine: keep their pace
            return self.config.interval_s
        self.failures += 1
        base = min(MAX_BACKOFF_S, max(15.0, self.config.interval_s / 4) * 2 ** (self.failures - 1))
        delay = base * random.uniform(0.8, 1.0)
        asked = max((p.retry_after_s or 0.0) for p in result.problems)
        return min(max(delay, asked), 3600.0)

    def run(self, *, once: bool = False, stop: threading.Event | None = None,
            on_poll: Callable[[CollectResult], None] | None = None) -> CollectResult:
        stop = stop or self._stop
        result = CollectResult()
        while not stop.is_set():
            try:
                result = self.poll()
            except Exception as exc:  # a bug must not end the loop
                log.exception("Azure Monitor collector: unexpected error")
                result = CollectResult(problems=[CollectProblem(FAILED, f"unexpected error: {_first_line(exc)}")])
            delay = None if once else self.next_delay(result)
            self._report(result, delay)
            self.last_result = result
            if on_poll is not None:
                on_poll(result)
            if once or delay is None:
                break
            stop.wait(delay)
        return result

    def start(self) -> threading.Thread:
        """Run in a daemon thread (the console's option); :meth:`stop` ends it."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="azure-monitor", daemon=True)
            self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.clients.close()
