"""``symphony deploy windows``: the PowerShell an image build runs once (templates/windows.ps1).

One template; the worker's options are embedded as the TOML file it reads (a single-quoted
here-string, so PowerShell changes nothing in it), and :func:`embedded_config` reads them back.
"""
from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources

from symphony.engine import ConfigError

from .service import WorkerService, worker_toml

VENV = r"C:\Symphony\venv"
CONFIG = r"C:\ProgramData\Symphony\worker.toml"
SECRETS = r"C:\ProgramData\Symphony\secrets"
LAUNCHER = r"C:\Symphony\start-worker.ps1"
TASK = "SymphonyWorker"
PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
HERE_STRING = re.compile(r"^\$WorkerConfig = @'\r?\n(.*?)^'@", re.MULTILINE | re.DOTALL)


def template() -> str:
    return resources.files("symphony.deploy").joinpath("templates/windows.ps1").read_text(encoding="utf-8")


def _quoted(text: str) -> str:
    """Inside a PowerShell single-quoted string: a quote is doubled."""
    return text.replace("'", "''")


def windows_service(service: WorkerService) -> WorkerService:
    """The service with Windows' paths where the Linux defaults were."""
    return replace(service, venv=VENV, config_path=CONFIG, url_file=service.url_file and (SECRETS + r"\redis-url"),
                   password_file=service.password_file and (SECRETS + r"\redis-password"),
                   key_file=service.key_file and (SECRETS + r"\encryption-key"))


def windows_script(service: WorkerService, *, python: str = "python") -> str:
    from symphony import __version__

    service = windows_service(service)
    config = worker_toml(service, header=f"symphony-worker's options (pool {service.pool}); no secret here")
    if re.search(r"^'@", config, re.MULTILINE):
        raise ConfigError("a worker option's value starts a line with '@, which would end the PowerShell here-string")
    fetch = "\n".join(
        f"& '{_quoted(VENV)}\\Scripts\\python.exe' -m symphony.deploy.keyvault --vault '{service.key_vault}' "
        f"--secret '{_quoted(secret)}' --file '{_quoted(path)}'" for secret, path in service.secret_files())
    values = {"version": __version__, "pool": service.pool, "python": _quoted(python), "venv": _quoted(VENV),
              "config": _quoted(CONFIG), "launcher": _quoted(LAUNCHER), "task": TASK, "secret_dir": _quoted(SECRETS),
              "package": _quoted(service.package),
              "index_args": f"--index-url '{_quoted(service.index_url)}'" if service.index_url else "",
              "config_toml": config, "fetch_secrets": fetch or "# (no Key Vault: the secret files are the image's)"}

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"templates/windows.ps1: unknown placeholder {{{{{name}}}}}")
        return values[name]

    return PLACEHOLDER.sub(fill, template())


def embedded_config(script: str) -> str:
    """The TOML file a generated script writes (what the worker will read)."""
    match = HERE_STRING.search(script)
    if not match:
        raise ConfigError("no embedded worker configuration in this script")
    return match.group(1)
