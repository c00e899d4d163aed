"""Where Redis is and how to log in: URL, password, TLS, from arguments or the environment.

Precedence: an explicit ``--redis URL`` beats ``SYMPHONY_REDIS_URL``, which beats ``REDIS_URL``;
the default is ``redis://127.0.0.1:6379/0``. A password can also come from ``REDIS_PASSWORD``
or from a file (``--redis-password-file`` / ``REDIS_PASSWORD_FILE``), so it need not appear on
a command line. Every password read here is registered for redaction.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigError
from .redaction import redact_url, register_secret

DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_VARS = ("SYMPHONY_REDIS_URL", "REDIS_URL")
PASSWORD_VAR = "REDIS_PASSWORD"
PASSWORD_FILE_VARS = ("SYMPHONY_REDIS_PASSWORD_FILE", "REDIS_PASSWORD_FILE")
CA_FILE_VARS = ("SYMPHONY_REDIS_CA_FILE", "REDIS_CA_FILE")


@dataclass(frozen=True)
class RedisConfig:
    """How to reach Redis. ``password`` never appears in ``repr`` or :attr:`display`."""

    url: str = DEFAULT_URL
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    ca_file: str | None = None
    explicit: bool = False  # the operator named a server (flag or environment)
    client_name: str = "symphony"

    def __post_init__(self) -> None:
        # whatever built this config (resolve_redis, or a worker process from its pickled
        # options), its password is masked in every output of this process from now on
        register_secret(self.password)

    @property
    def display(self) -> str:
        """The URL without any password, for headers, logs and snapshots."""
        return redact_url(self.url)

    def __str__(self) -> str:
        return self.display

    def with_url(self, url: str, explicit: bool = True) -> "RedisConfig":
        return RedisConfig(url=url, password=self.password, username=self.username,
                           ca_file=self.ca_file, explicit=explicit, client_name=self.client_name)

    def with_client_name(self, name: str) -> "RedisConfig":
        return RedisConfig(url=self.url, password=self.password, username=self.username,
                           ca_file=self.ca_file, explicit=self.explicit, client_name=name)


def _read_password_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Redis password file {path}: {exc.strerror or exc}") from None
    password = text.strip("\r\n")
    if not password:
        raise ConfigError(f"the Redis password file {path} is empty")
    return password


def resolve_redis(url: str | None = None, password_file: str | None = None,
                  ca_file: str | None = None, env: Mapping[str, str] | None = None) -> RedisConfig:
    """Build a :class:`RedisConfig` from arguments, falling back on the environment."""
    env = os.environ if env is None else env
    explicit = url is not None
    if url is None:
        for var in URL_VARS:
            if env.get(var):
                url, explicit = env[var], True
                break
    url = url or DEFAULT_URL
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(url)}: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"invalid Redis URL {redact_url(url)}: the scheme must be redis://, rediss:// or unix://")
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    query = parse_qs(parts.query)
    if "password" in query:
        password = query["password"][0]
    if password is None and env.get(PASSWORD_VAR):
        password = env[PASSWORD_VAR]
    if password_file is None:
        password_file = next((env[v] for v in PASSWORD_FILE_VARS if env.get(v)), None)
    if password_file:
        password = _read_password_file(password_file)
    if ca_file is None:
        ca_file = next((env[v] for v in CA_FILE_VARS if env.get(v)), None)
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"the Redis CA file {ca_file} does not exist")
    register_secret(password)
    return RedisConfig(url=url, password=password, username=username, ca_file=ca_file, explicit=explicit)
