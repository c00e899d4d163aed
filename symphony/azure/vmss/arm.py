"""The scale set through ARM: azure-mgmt-compute's ``ComputeManagementClient`` with
``DefaultAzureCredential`` (or an injected credential and transport: the tests' recorded ARM).

azure-core's own retries are off: the scaler retries itself, so that it can say what happened
once and honour Retry-After. Nothing waits on a long-running operation: a capacity change or an
instance deletion is sent (ARM answers 200/202 at once) and the next round reads the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from symphony.engine import ConfigError

INSTALL_HINT = "the Azure packages are not installed: pip install 'redis-symphony[azure]'"


@dataclass(frozen=True)
class Instance:
    """One VM of the scale set: its instance id (for ARM) and computer name (the workers' host)."""

    instance_id: str
    computer_name: str
    provisioning_state: str = ""

    @property
    def leaving(self) -> bool:
        return self.provisioning_state.lower() == "deleting"


class ScaleSetArm:
    """capacity / set_capacity / instances / delete_instances of one scale set."""

    def __init__(self, subscription: str, resource_group: str, name: str, *, credential: Any = None,
                 transport: Any = None, base_url: str | None = None):
        try:
            from azure.mgmt.compute import ComputeManagementClient
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        if credential is None:
            from symphony.azure.monitor.arm import default_credential

            credential = default_credential()
        kwargs: dict[str, Any] = {"retry_total": 0}
        if transport is not None:
            kwargs["transport"] = transport
        if base_url:
            kwargs["base_url"] = base_url
        self.client = ComputeManagementClient(credential, subscription, **kwargs)
        self.subscription, self.resource_group, self.name = subscription, resource_group, name

    @property
    def target(self) -> str:
        """The scale set's name for its cooldown in Redis (ARM's names ignore case)."""
        return f"vmss/{self.subscription}/{self.resource_group}/{self.name}".lower()

    def capacity(self) -> int:
        scale_set = self.client.virtual_machine_scale_sets.get(self.resource_group, self.name)
        return int(scale_set.sku.capacity or 0) if scale_set.sku is not None else 0

    def set_capacity(self, capacity: int) -> None:
        from azure.mgmt.compute.models import Sku, VirtualMachineScaleSetUpdate

        self.client.virtual_machine_scale_sets.begin_update(
            self.resource_group, self.name, VirtualMachineScaleSetUpdate(sku=Sku(capacity=capacity)), polling=False)

    def instances(self) -> list[Instance]:
        out = []
        for vm in self.client.virtual_machine_scale_set_vms.list(self.resource_group, self.name):
            profile = getattr(vm, "os_profile", None)
            out.append(Instance(instance_id=str(vm.instance_id),
                                computer_name=str(getattr(profile, "computer_name", "") or vm.name or ""),
                                provisioning_state=str(getattr(vm, "provisioning_state", "") or "")))
        return out

    def delete_instances(self, instance_ids: list[str]) -> None:
        from azure.mgmt.compute.models import VirtualMachineScaleSetVMInstanceRequiredIDs

        self.client.virtual_machine_scale_sets.begin_delete_instances(
            self.resource_group, self.name, VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=instance_ids),
            polling=False)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass
