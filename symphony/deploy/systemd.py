"""``symphony deploy systemd``: the unit that runs the worker as a service on Linux.

* ``Restart=on-failure``: a crash (or a Redis that refused it, exit 2) starts it again after
  ``RestartSec``; a clean stop (``systemctl stop``, a Scheduled Event it obeyed) does not.
* ``KillMode=mixed``: a stop sends SIGTERM to the supervisor only, which asks its worker
  processes to finish or hand back their tasks (``drain-timeout``); SIGKILL reaches every process
  of the unit only after ``TimeoutStopSec``, longer than the drain window and the supervisor's grace.
* ``Nice=``: the whole unit at a lower CPU priority (the worker's own ``--nice`` stays 0).
* journald keeps the JSON lines (``log-format = "json"``): ``journalctl -u symphony-worker -o cat``.
"""
from __future__ import annotations

import shlex

from .service import WorkerService

UNIT_NAME = "symphony-worker.service"


def exec_start(service: WorkerService) -> str:
    return shlex.join([service.worker_command, "--config", service.config_path])


def fetch_secrets(service: WorkerService) -> list[str]:
    """ExecStartPre lines that fill the secret files from Key Vault before every start (as root:
    the ``+`` prefix; the files end up 0600, owned by the service user). A start after a rotation
    of the secret reads the new value; a vault not reachable yet fails the start, retried."""
    return ["+" + shlex.join([f"{service.venv}/bin/python", "-m", "symphony.deploy.keyvault", "--vault",
                              str(service.key_vault), "--secret", secret, "--file", path, "--owner", service.user,
                              "--tries", "5"])
            for secret, path in service.secret_files()]


def systemd_unit(service: WorkerService) -> str:
    from symphony import __version__

    pre = "".join(f"ExecStartPre={line}\n" for line in fetch_secrets(service))

    return f"""\
# The Symphony worker of pool {service.pool} (symphony deploy systemd, Symphony {__version__}).
# Its options: {service.config_path} (docs/configuration.md); its logs: journalctl -u symphony-worker
[Unit]
Description=Symphony worker (pool {service.pool})
Documentation=man:systemd.service(5)
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
User={service.user}
Group={service.user}
WorkingDirectory=~
{pre}ExecStart={exec_start(service)}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=10s
Nice={service.nice}
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec={service.stop_timeout_s}s
StandardOutput=journal
StandardError=journal
SyslogIdentifier=symphony-worker
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""
