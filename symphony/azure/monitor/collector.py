"""The collector's loop: discover the scale sets, read their metrics, store them, say what went wrong.

Every interval the collector

1. finds the scale sets (once, then every ten minutes or after a 404): the named ones, or every
   scale set of the resource group, with one ARM ``GET`` each (or one ``LIST``), which also tells
   each one's region;
2. reads, per region and per 50 scale sets, one ``metrics:getBatch`` call for the scale sets'
   totals and one split by instance (``VMName eq '*'``), through ``azure-monitor-querymetrics``'
   ``MetricsClient.query_resources`` on the regional endpoint: Percentage CPU (average), Disk
   Read/Write Bytes and Network In/Out Total (totals), one point a minute over the last 15;
3. replaces that window in Redis (``Engine.store_azure``) and appends the minutes that Azure will
   no longer revise to JSON Lines and/or CSV files for analysis.

Failures never end it: no configuration means the collector is off (and the console shows the
workers' host CPU instead); expired credentials, 403, throttling (429, honouring Retry-After), a
missing scale set or resource group, and network errors each give one clear message, then a retry
with backoff. Messages pass through ``engine.redact``; Azure client secrets from the environment
are registered as secrets before anything can print them.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from symphony.engine import AzureSample, ConfigError, PolicyNotice, describe_error, is_unavailable, redact

from .arm import AzureClients
from .config import AzureMonitorConfig
from .problems import EMPTY, FAILED, FATAL, NOT_FOUND, THROTTLED, CollectProblem, classify, first_line
from .samples import ScaleSet, of_scale_set, samples_from_results, with_instance_counts
from .sinks import FileSink, RedisSink

log = logging.getLogger("symphony.metrics")

BATCH_MAX = 50  # resource ids per metrics:getBatch call
DISCOVERY_EVERY_S = 600.0
MAX_BACKOFF_S = 900.0
OK, DEGRADED, ERROR = "ok", "degraded", "error"


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


class AzureCollector:
    """Polls Azure Monitor and stores what it reads. Run it with :meth:`run` (the CLI), in a
    thread with :meth:`start`/:meth:`stop` (the console), or one poll at a time with :meth:`poll`.

    ``engine`` may be None (files only). ``credential``/``transport`` are for tests and special
    setups; by default ``DefaultAzureCredential`` and azure-core's requests transport are used.
    """

    def __init__(self, engine: Any, config: AzureMonitorConfig, *, credential: Any = None, transport: Any = None,
                 clock: Callable[[], float] = time.time, on_message: Callable[[str, str], None] | None = None,
                 say_policy: bool = False):
        if config.missing:
            raise ConfigError(config.off_reason)
        self.engine = engine if config.redis else None
        self.redis = RedisSink(engine, config.retention_s, config.interval_s) if self.engine is not None else None
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
        # Redis' eviction policy, said once per change (at start, after a reconnect) by the service
        # ('symphony metrics collect'); the console says it in its header instead
        self.policy = PolicyNotice(log, "the Azure Monitor collector") if say_policy and self.engine else None

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
        if self.redis is not None:
            try:
                self.redis.status(self.state, self.message, result.scale_sets, self.clock())
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
        if self.policy is not None:
            self.policy.check(self.engine)
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
        """Read one batch (the totals, then per instance) and store it. Returns True when the
        remaining batches would fail the same way."""
        fetched: dict[bool, list[AzureSample] | None] = {}
        for per_instance in (False, True):
            samples, problem = self._fetch(region, chunk, start, end, per_instance)
            if problem is not None and problem.kind == NOT_FOUND:
                self._not_found(region, chunk, start, end, result)
                return False
            if problem is not None:
                result.problems.append(problem)
                if problem.kind in FATAL:
                    return True
            fetched[per_instance] = samples
        return self._store(chunk, (start.timestamp(), end.timestamp()), fetched[False], fetched[True], result)

    def _fetch(self, region: str, chunk: list[ScaleSet], start: datetime, end: datetime,
               per_instance: bool) -> tuple[list[AzureSample] | None, CollectProblem | None]:
        """One metrics query: its samples, or None and what went wrong."""
        names = ", ".join(s.name for s in chunk)
        try:
            results = self.clients.query(region, chunk, start, end, per_instance=per_instance)
            return samples_from_results(results, chunk, per_instance=per_instance), None
        except Exception as exc:
            what = f"reading {'per-instance ' if per_instance else ''}metrics of {names} ({region})"
            return None, classify(exc, what)

    def _not_found(self, region: str, chunk: list[ScaleSet], start: datetime, end: datetime,
                   result: CollectResult) -> None:
        """A 404: one missing scale set fails a whole batch, so read them one by one to find which;
        a single one that is missing is forgotten until the next discovery."""
        if len(chunk) > 1:
            for one in chunk:
                self._poll_chunk(region, [one], start, end, result)
            return
        name = chunk[0].name
        self.missing[name] = (f"scale set {name} has no metrics in Azure Monitor (deleted, or in another region "
                              f"than {region}?)")
        self.scale_sets.pop(name, None)
        result.problems.append(CollectProblem(NOT_FOUND, self.missing[name]))

    def _store(self, chunk: list[ScaleSet], window: tuple[float, float], totals: list[AzureSample] | None,
               instances: list[AzureSample] | None, result: CollectResult) -> bool:
        """Each scale set's samples into the result and Redis. True when Redis failed."""
        if totals is not None:
            totals = with_instance_counts(totals, instances)
        for s in chunk:
            mine_totals, mine_instances = of_scale_set(totals, s.name), of_scale_set(instances, s.name)
            result.samples.extend(mine_totals or [])
            result.samples.extend(mine_instances or [])
            if self.redis is None or (mine_totals is None and mine_instances is None):
                continue
            try:
                result.written += self.redis.store(s.name, window, mine_totals, mine_instances, self.clock())
            except Exception as exc:
                if self.policy is not None and is_unavailable(exc):
                    self.policy.lost()  # said again once Redis answers, if it still evicts
                result.problems.append(CollectProblem(FAILED, f"cannot write metrics to Redis: {describe_error(exc)}"))
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
                result = CollectResult(problems=[CollectProblem(FAILED, f"unexpected error: {first_line(exc)}")])
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
