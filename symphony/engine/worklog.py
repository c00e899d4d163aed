"""Each worker process's recent log lines in Redis, so an operator sees why a worker is unhappy
without logging in to its machine (``symphony logs WORKER``, the console's worker detail).

The lines live in a small capped STREAM per worker process (``Keys.worker_log``): fields ``t``
(the time, ms), ``l`` (the level) and ``m`` (the message, already redacted by the writer). Each
write trims it to about :data:`LOG_MAXLEN` entries and renews its TTL, the same as the worker's
hash, so the log of a worker that is gone disappears soon after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import redis

from .keys import Keys

LOG_MAXLEN = 500  # lines kept per worker process
MAX_MESSAGE = 4000  # characters kept of one line


@dataclass(frozen=True)
class LogLine:
    """One line of a worker's log: when (ms since the epoch), its level and its text."""

    at_ms: int
    level: str
    message: str
    id: str = ""  # the stream entry's id (to read what came after it)


def write_lines(client: redis.Redis, keys: Keys, worker_id: str, lines: Iterable[tuple[int, str, str]], *,
                ttl_ms: int, maxlen: int = LOG_MAXLEN) -> int:
    """Append ``(at_ms, level, message)`` lines in one round trip; return how many were sent."""
    key = keys.worker_log(worker_id)
    sent = 0
    with client.pipeline(transaction=False) as pipe:
        for at_ms, level, message in lines:
            pipe.xadd(key, {"t": int(at_ms), "l": level, "m": message[:MAX_MESSAGE]}, maxlen=maxlen,
                      approximate=True)
            sent += 1
        if sent:
            pipe.pexpire(key, int(ttl_ms))
            pipe.execute()
    return sent


def _line(entry_id: str, fields: dict) -> LogLine:
    try:
        at = int(fields.get("t") or entry_id.split("-")[0])
    except ValueError:
        at = 0
    return LogLine(at_ms=at, level=str(fields.get("l", "")), message=str(fields.get("m", "")), id=entry_id)


def read_lines(client: redis.Redis, keys: Keys, worker_id: str, count: int = 100,
               after: str | None = None) -> tuple[LogLine, ...]:
    """The last ``count`` lines, oldest first; with ``after`` (an entry id), only those after it."""
    key = keys.worker_log(worker_id)
    if after:
        entries = client.xrange(key, min=f"({after}", count=max(1, count))
    else:
        entries = list(reversed(client.xrevrange(key, count=max(1, count))))
    return tuple(_line(entry_id, fields) for entry_id, fields in entries)
