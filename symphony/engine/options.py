"""The command-line options every entry point shares, declared once.

``symphony`` (and each of its verbs), ``symphony-tui`` and ``symphony-worker`` take the same
Redis, encryption and logging options, and ``--version``. :func:`add_shared_options` declares
them on a parser; :func:`shared_options` turns the parsed arguments into a :class:`SharedOptions`
(a :class:`RedisConfig`, the encryption key, the log level and format), falling back on the
environment exactly as :func:`resolve_redis` and :func:`load_key` do.

A verb's own parser takes them too (``nested=True``): ``symphony --redis URL status`` and
``symphony status --redis URL`` mean the same, and an option absent after the verb keeps what was
given before it.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Mapping

from .config import RedisConfig, resolve_redis
from .crypto import Sealer, load_key, sealer_from
from .errors import ConfigError
from .server import ACCEPT_EVICTION_VAR

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class SharedOptions:
    """What the shared options say: where Redis is, the encryption key, how to log."""

    redis: RedisConfig
    key: bytes | None = field(default=None, repr=False)
    key_file: str | None = None  # where the key came from, when it was a file (to hand on to workers)
    log_level: str = "WARNING"
    log_format: str = "text"
    accept_eviction: bool = False  # run workers even where Redis may evict Symphony's keys

    def sealer(self) -> Sealer | None:
        """The AES-GCM sealer of the key, or None when no key is configured."""
        return sealer_from(self.key)


def _version() -> str:
    from symphony import __version__

    return __version__


def _level(text: str) -> str:
    value = text.strip().upper()
    if value not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid log level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return value


def add_shared_options(parser: argparse.ArgumentParser, *, log_level: str = "WARNING", nested: bool = False,
                       key_help: str = "") -> None:
    """Declare ``--redis``, ``--redis-password-file``, ``--redis-ca-file``, ``--encryption-key-file``,
    ``--log-level`` and ``--log-format`` on ``parser``, and ``--version`` unless ``nested``.

    ``log_level`` is the default level of this program (a worker logs INFO, the CLI WARNING).
    ``nested`` is for a verb's parser below one that already declared them: absent there, an
    option keeps the value given before the verb (argparse would otherwise reset it).
    """
    unset = argparse.SUPPRESS if nested else None
    redis = parser.add_argument_group("Redis")
    redis.add_argument("--redis", metavar="URL", default=unset,
                       help="Redis URL (default: $SYMPHONY_REDIS_URL, $REDIS_URL, or redis://127.0.0.1:6379/0); "
                            "a password in it is never shown")
    redis.add_argument("--redis-password-file", metavar="FILE", default=unset,
                       help="read the Redis password from FILE (default: $SYMPHONY_REDIS_PASSWORD_FILE, "
                            "$REDIS_PASSWORD_FILE, else the URL's or $REDIS_PASSWORD)")
    redis.add_argument("--redis-ca-file", metavar="FILE", default=unset,
                       help="CA certificate of a rediss:// (TLS) server (default: $SYMPHONY_REDIS_CA_FILE, "
                            "$REDIS_CA_FILE)")
    redis.add_argument("--accept-eviction", action="store_true", default=unset,
                       help="run workers even when Redis' maxmemory-policy can delete Symphony's keys "
                            "(allkeys-*, volatile-*); by default they refuse and say what to set: noeviction "
                            f"(default: ${ACCEPT_EVICTION_VAR})")
    crypto = parser.add_argument_group("encryption")
    crypto.add_argument("--encryption-key-file", metavar="FILE", default=unset,
                        help=key_help or "AES key (hex or base64) of encrypted task data and job values "
                                         "(default: $SYMPHONY_KEY_FILE, $SYMPHONY_KEY; docs/security.md)")
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-level", type=_level, metavar="LEVEL", default=argparse.SUPPRESS if nested else log_level,
                      help=f"{', '.join(LOG_LEVELS)} (default {log_level})")
    logs.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS if nested else "text",
                      help="text lines, or one JSON object a line (default text)")
    if not nested:
        parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                            help="print the version and exit")


def shared_options(args: argparse.Namespace, *, client_name: str = "symphony",
                   env: Mapping[str, str] | None = None) -> SharedOptions:
    """The :class:`SharedOptions` of parsed ``args`` (flags first, then the environment).

    Raises :class:`ConfigError` for a bad URL, an unreadable password or key file, or a missing
    CA file; nothing connects to Redis here.
    """
    config = resolve_redis(getattr(args, "redis", None), password_file=getattr(args, "redis_password_file", None),
                           ca_file=getattr(args, "redis_ca_file", None), env=env)
    key_file = getattr(args, "encryption_key_file", None)
    environ = os.environ if env is None else env
    accept = bool(getattr(args, "accept_eviction", False)) or truthy(environ.get(ACCEPT_EVICTION_VAR, ""),
                                                                     ACCEPT_EVICTION_VAR)
    return SharedOptions(accept_eviction=accept, redis=config.with_client_name(client_name), key=load_key(key_file, env), key_file=key_file,
                         log_level=getattr(args, "log_level", "WARNING"),
                         log_format=getattr(args, "log_format", "text"))


def truthy(text: str, what: str) -> bool:
    """``1 true yes on`` / ``0 false no off`` / empty (False), any case; else a :class:`ConfigError` naming ``what``."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what}={text!r} is not a yes/no value (use 1 or 0)")


def parse_duration(text: str | float | int | None, default: float | None = None) -> float | None:
    """Seconds from ``90``, ``90s``, ``15m``, ``6h`` or ``2d`` (``default`` when empty or None)."""
    if text is None or text == "":
        return default
    if isinstance(text, (int, float)):
        return float(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    s = str(text).strip().lower()
    try:
        return float(s[:-1]) * units[s[-1]] if s and s[-1] in units else float(s)
    except (ValueError, KeyError):
        raise ConfigError(f"{text!r} is not a duration (e.g. 90, 90s, 15m, 6h)") from None
