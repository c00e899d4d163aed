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


def systemd_unit(service: WorkerService) -> str:
    from symphony import __version__

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
ExecStart={exec_start(service)}
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
