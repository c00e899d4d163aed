"""Redis out of memory (``noeviction`` at its ``maxmemory``), said once per worker process.

Redis then refuses the commands that may grow memory, but not a script whose first write frees
some (a report's ``LREM`` lets the rest of ``finish.lua`` through): reports and claims may still
pass while the heartbeat's ``ZADD`` does not. So the heartbeat, at its fixed rate, is the one
that says when writes are accepted again; the loop and the heart both say when one was refused,
and only the first refusal of an episode is logged.
"""
from __future__ import annotations

import logging
import threading
import time

from symphony.engine import Engine

log = logging.getLogger("symphony.worker")


class MemoryNotice:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        return self._since is not None

    def refused(self, pending: int = 0) -> None:
        """A write was refused for lack of memory: said once, in words, until writes pass again."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        try:
            settings = self.engine.server_info().settings
        except Exception:  # noqa: BLE001
            settings = "memory settings unknown"
        log.error("Redis is out of memory (%s): it refuses writes, so this worker cannot renew its lease and may "
                  "not claim or report tasks; it keeps its %d report(s) and tries again with backoff, nothing is "
                  "lost. Free memory: raise maxmemory, or 'symphony purge' a finished session", settings, pending)

    def accepted(self) -> None:
        """A heartbeat went through: Redis accepts writes again (said once)."""
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning("Redis accepts writes again after %.0fs out of memory; resuming", time.monotonic() - since)
