"""Keeping secrets out of every output: logs, console, snapshots and exception messages.

Secrets are registered when they are read (a Redis password from a URL, an environment
variable or a file; Azure client secrets); :func:`redact` then replaces them wherever text
leaves the process. URLs are also redacted structurally, so a password we never saw is
hidden too.
"""
from __future__ import annotations

import io
import logging
import os
import re
import threading
from typing import Mapping, MutableMapping
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

# Every environment variable Symphony knows that holds a secret, or the path of a file that
# holds one. Handlers never get any of them (worker processes drop them before a handler runs);
# the values of those that hold a secret are masked in every output (of a URL, its password; a
# ``*_FILE`` / ``*_PATH`` variable names where a secret is, which is not itself masked).
SECRET_ENVIRONMENT: tuple[str, ...] = (
    "REDIS_URL", "SYMPHONY_REDIS_URL", "SYMPHONY_REDIS_URL_FILE", "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE", "SYMPHONY_REDIS_PASSWORD_FILE",
    "SYMPHONY_KEY", "SYMPHONY_KEY_FILE",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PATH",
    # Azure Storage, for outputs in Blob Storage and the records forwarder (symphony.storage)
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING_FILE", "AZURE_STORAGE_KEY_FILE", "AZURE_STORAGE_SAS_TOKEN_FILE",
)
_lock = threading.Lock()
_secrets: set[str] = set()
# scheme://user:password@host  or  scheme://:password@host
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")
_QUERY_SECRET = re.compile(r"(?i)(?P<k>[?&](?:password|pass|secret|token|key)=)(?P<v>[^&\s]+)")


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` hides it from now on (short values are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secrets held by the variables of :data:`SECRET_ENVIRONMENT` set in ``env``."""
    env = os.environ if env is None else env
    values = []
    for name in SECRET_ENVIRONMENT:
        value = env.get(name)
        if not value or name.endswith(("_FILE", "_PATH")):
            continue
        if name.endswith("CONNECTION_STRING"):  # an Azure connection string: the whole of it, and its key or SAS
            values.append(value)
            values += connection_string_secrets(value)
            continue
        if "://" in value:  # a URL: only its password is secret
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                values.append(unquote(password))
            continue
        values.append(value)
    return values


def connection_string_secrets(value: str) -> list[str]:
    """The secret parts of an Azure Storage connection string (its account key, its SAS token)."""
    found = []
    for part in value.split(";"):
        name, _, secret = part.partition("=")
        if name.strip().lower() in ("accountkey", "sharedaccesssignature") and secret:
            found.append(secret.strip())
    return found


def register_environment_secrets(env: Mapping[str, str] | None = None) -> None:
    """Mask, from now on, every secret held by a variable of :data:`SECRET_ENVIRONMENT`."""
    for value in secret_values(env):
        register_secret(value)


def without_secret_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (the process's environment by default) without :data:`SECRET_ENVIRONMENT`."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k not in SECRET_ENVIRONMENT}


def drop_secret_environment(env: MutableMapping[str, str] | None = None) -> None:
    """Remove :data:`SECRET_ENVIRONMENT` from ``env`` (this process's environment by default, so
    that processes started from now on never inherit them)."""
    env = os.environ if env is None else env
    for name in SECRET_ENVIRONMENT:
        env.pop(name, None)


def redact(text: object) -> str:
    """``text`` as a string with every known secret and every URL password masked."""
    s = str(text)
    s = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("at"), s)
    s = _QUERY_SECRET.sub(lambda m: m.group("k") + MASK, s)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    return s


def redact_url(url: str) -> str:
    """A Redis URL fit for display: the password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.password is None:
        return redact(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:{MASK}@{netloc}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and exception text) of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        if record.exc_info:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to every handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before passing them on (for ``sys.stdout`` and
    ``sys.stderr`` of processes that run untrusted handlers: what a handler prints is masked too).
    A line is held until its newline, so a secret split across writes is still found."""

    def __init__(self, target):
        self._target = target
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")

    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return self._target.isatty()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                complete, _, self._pending = self._pending.rpartition("\n")
                self._target.write(redact(complete + "\n"))
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._target.write(redact(self._pending))
                self._pending = ""
            self._target.flush()


def redact_standard_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`RedactingStream` (once)."""
    import sys

    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
