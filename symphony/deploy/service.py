"""The worker service every generator describes, and the TOML configuration it is given."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from symphony.engine import ConfigError, is_name

AZURE_SCHEDULED_EVENTS = "http://169.254.169.254/metadata/scheduledevents"
STOP_MARGIN_S = 30  # beyond the drain timeout and the supervisor's own grace (15 s) before a stop kills
SUPERVISOR_GRACE_S = 15


@dataclass(frozen=True)
class WorkerService:
    """One machine's worker service: what runs, as whom, from where, with which options."""

    pool: str
    redis_url: str  # "" with url_file: the URL is only on the machine
    processes: int = 1
    nice: int = 10
    drain_timeout_s: float = 30.0
    user: str = "symphony"
    venv: str = "/opt/symphony/venv"
    config_path: str = "/etc/symphony/worker.toml"
    url_file: str | None = None  # on the machine: the file holding the Redis URL (it may hold the password)
    password_file: str | None = None  # on the machine; None: the Redis asks for no password
    key_file: str | None = None  # on the machine; None: task data in clear text
    ca_file: str | None = None
    scheduled_events: str = AZURE_SCHEDULED_EVENTS  # "" turns the watcher off
    package: str = "redis-symphony"
    index_url: str | None = None
    log_format: str = "json"  # journald and the Windows event logs keep whole lines
    extra: dict[str, Any] = field(default_factory=dict)  # more worker options (file keys)
    key_vault: str | None = None  # fetch the secret files from this vault at boot
    password_secret: str = "symphony-redis-password"
    url_secret: str = "symphony-redis-url"
    key_secret: str = "symphony-encryption-key"

    def __post_init__(self) -> None:
        if not is_name(self.pool):
            raise ConfigError(f"--pool {self.pool!r} may only contain letters, digits and . _ + @ = , -")
        if self.processes < 1:
            raise ConfigError("--processes must be at least 1")
        if self.drain_timeout_s <= 0:
            raise ConfigError("--drain-timeout must be positive")
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.user):
            raise ConfigError(f"--user {self.user!r} is not a valid user name")
        if self.url_file:
            if self.redis_url:
                raise ConfigError("give the VMs' Redis URL (--redis) or the file on the VMs that holds it "
                                  "(--redis-url-file), not both")
        else:
            self._check_url()
        if self.key_vault is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]", self.key_vault):
            raise ConfigError(f"--key-vault {self.key_vault!r} is not a Key Vault name (3-24 letters, digits, -)")

    def _check_url(self) -> None:
        try:
            parts = urlsplit(self.redis_url)
            password = parts.password
        except ValueError as exc:
            raise ConfigError(f"--redis {self.redis_url!r}: {exc}") from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"--redis {self.redis_url!r}: expected redis://, rediss:// or unix://")
        if password:
            raise ConfigError("the Redis URL holds a password: what symphony deploy prints holds no secret; the "
                              "workers read it from a file on the VM (--vm-password-file, --redis-url-file, "
                              "--key-vault)")

    @property
    def stop_timeout_s(self) -> int:
        """How long a service manager waits for a stop before it kills: the drain window, the
        supervisor's grace beyond it, and a margin."""
        return int(math.ceil(self.drain_timeout_s)) + SUPERVISOR_GRACE_S + STOP_MARGIN_S

    @property
    def worker_command(self) -> str:
        return f"{self.venv}/bin/symphony-worker"

    def options(self) -> dict[str, Any]:
        """The worker's options, as the keys of its TOML file."""
        out: dict[str, Any] = {"redis-url-file": self.url_file} if self.url_file else {"redis": self.redis_url}
        if self.password_file:
            out["redis-password-file"] = self.password_file
        if self.ca_file:
            out["redis-ca-file"] = self.ca_file
        if self.key_file:
            out["encryption-key-file"] = self.key_file
        out.update({"pool": self.pool, "processes": self.processes, "drain-timeout": self.drain_timeout_s,
                    "log-format": self.log_format})
        if self.scheduled_events:
            out["scheduled-events"] = self.scheduled_events
        out.update(self.extra)
        return out

    def secret_files(self) -> list[tuple[str, str]]:
        """(Key Vault secret, file on the machine) to fetch at boot."""
        if not self.key_vault:
            return []
        pairs = []
        if self.url_file:
            pairs.append((self.url_secret, self.url_file))
        if self.password_file:
            pairs.append((self.password_secret, self.password_file))
        if self.key_file:
            pairs.append((self.key_secret, self.key_file))
        return pairs


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    raise ConfigError(f"cannot write {value!r} in a worker's configuration file")


def worker_toml(service: WorkerService, *, header: str = "") -> str:
    """The worker's TOML configuration file, checked against the worker's own option parser."""
    options = service.options()
    check_options(options)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()] if header else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def check_options(options: dict[str, Any]) -> None:
    """Raise ConfigError unless symphony-worker accepts every option (its parser decides)."""
    import os
    import tempfile

    from symphony.engine import read_config_file
    from symphony.workers.cli import build_parser

    text = "\n".join(f"{k} = {_toml_value(v)}" for k, v in options.items()) + "\n"
    fd, path = tempfile.mkstemp(suffix=".toml")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        try:
            read_config_file(path, build_parser())
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"{path} line ", "worker option on line ").replace(path, "worker options")) \
                from None
    finally:
        os.unlink(path)
