"""Keeping secrets out of every output: logs, console, snapshots and exception messages.

Secrets are registered when they are read (a Redis password from a URL, an environment
variable or a file; Azure client secrets); :func:`redact` then replaces them wherever text
leaves the process. URLs are also redacted structurally, so a password we never saw is
hidden too.
"""
from __future__ import annotations

import io
import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
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
