"""Where Redis is and how to log in: URL, password, TLS, from arguments or the environment.

Precedence: an explicit ``--redis URL`` (or ``--redis-url-file FILE``, the URL read from a file:
a URL holding a password then appears on no command line and in no environment) beats
``SYMPHONY_REDIS_URL``, which beats ``SYMPHONY_REDIS_URL_FILE``, which beats ``REDIS_URL``;
the default is ``redis://127.0.0.1:6379/0``. The password comes from a file
(``--redis-password-file``, else ``SYMPHONY_REDIS_PASSWORD_FILE`` or ``REDIS_PASSWORD_FILE``: it
then appears on no command line), else the URL, else ``REDIS_PASSWORD``. The CA certificate of a
``rediss://`` server comes from ``--redis-ca-file``, ``SYMPHONY_REDIS_CA_FILE`` or
``REDIS_CA_FILE``. Every password read here is registered for redaction. The command-line
options themselves are declared once, in :mod:`engine.options`.

Redis Cluster: ``cluster`` is ``auto`` (the default: :func:`engine.connection.connect` asks the
server once, ``INFO cluster``), ``yes`` or ``no``; from ``SYMPHONY_REDIS_CLUSTER``, else the URL's
``?cluster=yes|no|auto`` (which travels with the URL to every process it is given to), else auto.
docs/cluster.md says when to set it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from .errors import ConfigError
from .redaction import redact_url, register_secret

DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_VARS = ("SYMPHONY_REDIS_URL", "REDIS_URL")
URL_FILE_VAR = "SYMPHONY_REDIS_URL_FILE"
PASSWORD_VAR = "REDIS_PASSWORD"
PASSWORD_FILE_VARS = ("SYMPHONY_REDIS_PASSWORD_FILE", "REDIS_PASSWORD_FILE")
CA_FILE_VARS = ("SYMPHONY_REDIS_CA_FILE", "REDIS_CA_FILE")
CLUSTER_VAR = "SYMPHONY_REDIS_CLUSTER"
CLUSTER_MODES = ("auto", "yes", "no")
_CLUSTER_WORDS = {"auto": "auto", "": "auto", "yes": "yes", "1": "yes", "true": "yes", "on": "yes",
                  "no": "no", "0": "no", "false": "no", "off": "no"}


@dataclass(frozen=True, repr=False)
class RedisConfig:
    """How to reach Redis. ``password`` (given apart or inside the URL) never appears in ``repr``,
    ``str`` or :attr:`display`."""

    url: str = DEFAULT_URL
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    ca_file: str | None = None
    explicit: bool = False  # the operator named a server (flag or environment)
    client_name: str = "symphony"
    cluster: str = "auto"  # auto | yes | no: a Redis Cluster (auto: ask the server once)

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

    def __repr__(self) -> str:
        return (f"RedisConfig(url={self.display!r}, username={self.username!r}, ca_file={self.ca_file!r}, "
                f"explicit={self.explicit!r}, client_name={self.client_name!r}, cluster={self.cluster!r})")

    def with_client_name(self, name: str) -> "RedisConfig":
        return replace(self, client_name=name)

    @property
    def server_url(self) -> str:
        """The URL for redis-py: without Symphony's own ``cluster=`` query parameter."""
        return strip_cluster_option(self.url)


def cluster_mode(text: str, where: str) -> str:
    """``auto``, ``yes`` or ``no`` from a word (1/0, true/false, on/off too); else a ConfigError."""
    mode = _CLUSTER_WORDS.get(text.strip().lower())
    if mode is None:
        raise ConfigError(f"{where}={text!r}: a Redis Cluster setting is auto, yes or no")
    return mode


def strip_cluster_option(url: str) -> str:
    """``url`` without its ``cluster=`` query parameter (redis-py would refuse it)."""
    if "cluster=" not in url:
        return url
    base, sep, query = url.partition("?")
    kept = [part for part in query.split("&") if part and not part.startswith("cluster=")]
    return base + ("?" + "&".join(kept) if kept else "")


def _cluster(parts: SplitResult, env: Mapping[str, str]) -> str:
    """``$SYMPHONY_REDIS_CLUSTER`` beats the URL's ``?cluster=``, which beats auto."""
    if env.get(CLUSTER_VAR):
        return cluster_mode(env[CLUSTER_VAR], CLUSTER_VAR)
    query = parse_qs(parts.query, keep_blank_values=True)
    if "cluster" in query:
        return cluster_mode(query["cluster"][0], "the Redis URL's cluster")
    return "auto"


def _read_password_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Redis password file {path}: {exc.strerror or exc}") from None
    password = text.strip("\r\n")
    if not password:
        raise ConfigError(f"the Redis password file {path} is empty")
    return password


def _read_url_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Redis URL file {path}: {exc.strerror or exc}") from None
    url = text.strip()
    if not url:
        raise ConfigError(f"the Redis URL file {path} is empty")
    if "\n" in url:
        raise ConfigError(f"the Redis URL file {path} must hold one line: the URL")
    return url


def _url(url: str | None, url_file: str | None, env: Mapping[str, str]) -> tuple[str | None, bool]:
    """The URL (None: the default) and whether the operator named it."""
    if url is not None and url_file:
        raise ConfigError("give the Redis URL or the file that holds it, not both (--redis, --redis-url-file)")
    if url_file:
        return _read_url_file(url_file), True
    if url is not None:
        return url, True
    if env.get(URL_VARS[0]):
        return env[URL_VARS[0]], True
    if env.get(URL_FILE_VAR):
        return _read_url_file(env[URL_FILE_VAR]), True
    url = _first(env, URL_VARS[1:])
    return url, url is not None


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` set (non-empty) in ``env``."""
    return next((env[name] for name in names if env.get(name)), None)


def _parse_url(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(url)}: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"invalid Redis URL {redact_url(url)}: the scheme must be redis://, rediss:// or unix://")
    return parts


def _password(parts: SplitResult, password_file: str | None, env: Mapping[str, str]) -> str | None:
    """A password file (flag, then environment) beats ``?password=``, which beats the URL's own,
    which beats ``$REDIS_PASSWORD``."""
    password_file = password_file or _first(env, PASSWORD_FILE_VARS)
    if password_file:
        return _read_password_file(password_file)
    query = parse_qs(parts.query)
    if "password" in query:
        return query["password"][0]
    if parts.password:
        return unquote(parts.password)
    return env.get(PASSWORD_VAR) or None


def _ca_file(ca_file: str | None, env: Mapping[str, str]) -> str | None:
    ca_file = ca_file or _first(env, CA_FILE_VARS)
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"the Redis CA file {ca_file} does not exist")
    return ca_file


def resolve_redis(url: str | None = None, password_file: str | None = None,
                  ca_file: str | None = None, env: Mapping[str, str] | None = None, *,
                  url_file: str | None = None) -> RedisConfig:
    """Build a :class:`RedisConfig` from arguments, falling back on the environment."""
    env = os.environ if env is None else env
    url, explicit = _url(url, url_file, env)
    url = url or DEFAULT_URL
    parts = _parse_url(url)
    password = _password(parts, password_file, env)
    register_secret(password)
    return RedisConfig(url=url, password=password, username=unquote(parts.username) if parts.username else None,
                       ca_file=_ca_file(ca_file, env), explicit=explicit, cluster=_cluster(parts, env))
