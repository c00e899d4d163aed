"""The Azure side: credentials, the ARM calls that find the scale sets, the regional metrics clients.

The Azure packages are imported only when a collector is built, so importing this package needs
no ``azure`` extra.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from symphony.engine import ConfigError, register_environment_secrets

from .config import AzureMonitorConfig
from .samples import INSTANCE_DIMENSION, METRICS, NAMESPACE, ScaleSet

ARM_API_VERSION = "2024-07-01"  # Microsoft.Compute virtualMachineScaleSets GET / LIST
INSTALL_HINT = "the Azure packages are not installed: pip install 'redis-symphony[azure]'"


def register_azure_secrets(env: Mapping[str, str] | None = None) -> None:
    """Mask the secrets of the environment in every output from now on: the Azure credentials
    azure-identity reads, among every variable of the engine's one list (SECRET_ENVIRONMENT)."""
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
