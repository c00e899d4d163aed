"""Autoscaling an Azure VM scale set by the pool's work (``symphony scale vmss``; docs/deploy.md).

Part of the ``azure`` extra: azure-mgmt-compute and azure-identity are imported only when a
scaler is built. Uses only the engine's public API; the engine never imports it.
"""
from __future__ import annotations

from .arm import Instance, ScaleSetArm
from .scaler import EngineFleet, Fleet, ScaleLimits, ScaleStep, VmssScaler, wanted

__all__ = ["Instance", "ScaleSetArm", "EngineFleet", "Fleet", "ScaleLimits", "ScaleStep", "VmssScaler", "wanted"]
