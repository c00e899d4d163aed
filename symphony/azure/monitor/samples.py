"""What the collector reads (the metrics of VM scale sets) and how Azure's answers become
:class:`engine.AzureSample`\\ s: one per minute per scale set, and per instance."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from symphony.engine import AzureSample

log = logging.getLogger("symphony.metrics")

NAMESPACE = "Microsoft.Compute/virtualMachineScaleSets"
# (Azure metric name, AzureSample field, aggregation): CPU, disk and network of every scale set
METRICS = (("Percentage CPU", "cpu", "average"), ("Disk Read Bytes", "disk_read", "total"),
           ("Disk Write Bytes", "disk_write", "total"), ("Network In Total", "net_in", "total"),
           ("Network Out Total", "net_out", "total"))
AGGREGATION = {name: (attr, how) for name, attr, how in METRICS}
INSTANCE_DIMENSION = "VMName"


@dataclass(frozen=True)
class ScaleSet:
    name: str
    id: str
    location: str
    capacity: int | None = None


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


def _owner(result: Any, position: int, results: Sequence[Any], chunk: Sequence[ScaleSet],
           by_id: Mapping[str, ScaleSet], by_name: Mapping[str, ScaleSet]) -> ScaleSet | None:
    """The scale set a result belongs to: by the resource id its metrics' ids start with, else by
    position when there is one result per scale set."""
    for metric in result.metrics:
        rid = _resource_of(metric.id)
        owner = (by_id.get(rid) or by_name.get(rid.rsplit("/", 1)[-1])) if rid else None
        if owner:
            return owner
    return chunk[position] if len(results) == len(chunk) else None


def _add_points(rows: dict[tuple[str, str, float], dict[str, Any]], owner: ScaleSet, result: Any, *,
                per_instance: bool) -> None:
    """Every value of ``result``'s known metrics into ``rows`` (scale set, instance, minute) -> fields."""
    for metric in result.metrics:
        if metric.name not in AGGREGATION:
            continue
        attr, how = AGGREGATION[metric.name]
        for series in metric.timeseries:
            instance = _dimension(series.metadata_values, INSTANCE_DIMENSION) if per_instance else ""
            if per_instance and not instance:
                continue
            for point in series.data:
                value = getattr(point, how, None)
                if value is not None:
                    row = rows.setdefault((owner.name, instance, _epoch(point.timestamp)), {"region": owner.location})
                    row[attr] = float(value)


def samples_from_results(results: Sequence[Any], chunk: Sequence[ScaleSet], *,
                         per_instance: bool) -> list[AzureSample]:
    """Turn ``MetricsClient.query_resources`` results into one sample per minute and scope.

    The result list carries no resource id; each metric's id starts with its resource's id, so
    results are matched by that (and by position only as a last resort).
    """
    by_id = {s.id.lower(): s for s in chunk}
    by_name = {s.name.lower(): s for s in chunk}
    rows: dict[tuple[str, str, float], dict[str, Any]] = {}
    for position, result in enumerate(results):
        owner = _owner(result, position, results, chunk, by_id, by_name)
        if owner is None:
            log.debug("metrics result without a known resource id; skipped")
            continue
        _add_points(rows, owner, result, per_instance=per_instance)
    samples = [AzureSample(time=t, scale_set=name, instance=inst, **row) for (name, inst, t), row in rows.items()]
    samples.sort(key=lambda s: (s.scale_set, s.time, s.instance))
    return samples


def with_instance_counts(totals: list[AzureSample], instances: list[AzureSample] | None) -> list[AzureSample]:
    """The scale-set samples, each with the number of its instances that reported CPU that minute."""
    if instances is None:
        return totals
    counts: dict[tuple[str, float], int] = {}
    for s in instances:
        if s.cpu is not None:
            counts[(s.scale_set, s.time)] = counts.get((s.scale_set, s.time), 0) + 1
    return [replace(s, instances=counts.get((s.scale_set, s.time), s.instances)) for s in totals]


def of_scale_set(samples: list[AzureSample] | None, name: str) -> list[AzureSample] | None:
    """The samples of one scale set (None stays None: its query failed)."""
    return None if samples is None else [s for s in samples if s.scale_set == name]
