"""``symphony deploy cloud-init``: the user-data of a Linux VM scale set (its custom data).

cloud-init runs it at the first boot, without any VM extension: it creates the service user,
installs Symphony into a virtual environment (from an index or a wheel URL), writes the worker's
configuration and its systemd unit, fetches the Redis password and encryption key from Key Vault
with the VM's managed identity when asked (``symphony.deploy.keyvault``), and starts the service.
The files the service user must own are written late (``defer: true``), once the user exists.
"""
from __future__ import annotations

import yaml

from .service import WorkerService, worker_toml
from .systemd import UNIT_NAME, systemd_unit


class _Literal(str):
    """A multi-line string written as a YAML literal block."""


def _literal(dumper: yaml.SafeDumper, data: _Literal):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


class _Dumper(yaml.SafeDumper):
    pass


class _Flow(list):
    """A command, written on one line: [systemctl, daemon-reload]."""


_Dumper.add_representer(_Literal, _literal)
_Dumper.add_representer(_Flow, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def install_commands(service: WorkerService) -> list[list[str]]:
    pip = [f"{service.venv}/bin/pip", "install", "--quiet", "--upgrade"]
    if service.index_url:
        pip += ["--index-url", service.index_url]
    return [["python3", "-m", "venv", service.venv], [*pip, "pip"], [*pip, service.package]]


def cloud_init(service: WorkerService) -> str:
    from symphony import __version__

    config_dir = service.config_path.rsplit("/", 1)[0] or "/"
    home = f"/var/lib/{service.user}"
    # a system user gets no home from useradd: the unit's working directory is made here
    runcmd: list[list[str]] = [["install", "-d", "-m", "0750", "-o", "root", "-g", service.user, config_dir],
                               ["install", "-d", "-m", "0750", "-o", service.user, "-g", service.user, home]]
    runcmd += install_commands(service)
    # the secret files are filled by the unit before every start (ExecStartPre, systemd.py)
    runcmd += [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT_NAME]]
    document = {
        "groups": [service.user],
        "users": ["default", {"name": service.user, "primary_group": service.user, "system": True,
                              "homedir": home, "shell": "/usr/sbin/nologin", "lock_passwd": True}],
        "package_update": True,
        "packages": ["python3-venv", "python3-pip"],
        "write_files": [
            {"path": service.config_path, "owner": f"root:{service.user}", "permissions": "0640", "defer": True,
             "content": _Literal(worker_toml(service, header=f"symphony-worker's options (pool {service.pool}); "
                                                             f"no secret here: docs/configuration.md"))},
            {"path": f"/etc/systemd/system/{UNIT_NAME}", "owner": "root:root", "permissions": "0644",
             "content": _Literal(systemd_unit(service))},
        ],
        "runcmd": [_Flow(c) for c in runcmd],
    }
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)
    return (f"#cloud-config\n# Symphony {__version__}: the worker service of pool {service.pool} "
            f"(symphony deploy cloud-init; docs/deploy.md)\n{body}")
