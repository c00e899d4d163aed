"""Deployment: what puts ``symphony-worker`` on a machine and keeps it running there.

``symphony deploy systemd`` prints a systemd unit, ``symphony deploy cloud-init`` the cloud-init
user-data of a Linux VM scale set (its custom data: no VM extension), and ``symphony deploy
windows`` the PowerShell an image build runs once (docs/deploy.md). Every generator starts from
one :class:`WorkerService`, whose worker options are written as the TOML file the worker reads
(``symphony-worker --config``; docs/configuration.md); nothing generated holds a secret: the
worker reads its Redis password and encryption key from files on the machine, which the
generated boot step fills from Azure Key Vault with the VM's managed identity when asked.

This package depends on the engine (and reads the worker's option parser to check what it
writes), never the reverse.
"""
from __future__ import annotations

from .cloudinit import cloud_init
from .service import WorkerService, worker_toml
from .systemd import systemd_unit
from .windows import windows_script

__all__ = ["WorkerService", "worker_toml", "systemd_unit", "cloud_init", "windows_script"]
