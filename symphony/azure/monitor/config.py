"""Where the collector reads metrics from and where it puts them: flags, else the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from symphony.engine import AZURE_RETENTION_S, ConfigError, parse_duration

ARM_ENDPOINT = "https://management.azure.com"
METRICS_HOST = "metrics.monitor.azure.com"  # regional endpoint: https://<region>.metrics.monitor.azure.com
# the environment variables of the configuration (each overridden by the CLI flag of the same meaning)
SUBSCRIPTION_VARS = ("SYMPHONY_AZURE_SUBSCRIPTION", "AZURE_SUBSCRIPTION_ID")
RESOURCE_GROUP_VAR = "SYMPHONY_AZURE_RESOURCE_GROUP"
SCALE_SETS_VAR = "SYMPHONY_AZURE_SCALE_SETS"
REGION_VAR = "SYMPHONY_AZURE_REGION"
INTERVAL_VAR = "SYMPHONY_AZURE_INTERVAL"
RETENTION_VAR = "SYMPHONY_AZURE_RETENTION"


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
        names = env.get(SCALE_SETS_VAR, "")
        values: dict[str, Any] = {
            "subscription": next((env[v] for v in SUBSCRIPTION_VARS if env.get(v)), ""),
            "resource_group": env.get(RESOURCE_GROUP_VAR, ""),
            "scale_sets": tuple(n.strip() for n in names.split(",") if n.strip()),
            "region": env.get(REGION_VAR, ""),
            "interval_s": parse_duration(env.get(INTERVAL_VAR), 60.0),
            "retention_s": parse_duration(env.get(RETENTION_VAR), AZURE_RETENTION_S),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("scale_sets") is not None:
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
