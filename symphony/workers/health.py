"""What a worker process knows of its host's health: it reports the host's failed attempts and
(now and then) its completions, and learns whether the host is quarantined and how many other
hosts are completing tasks. Shared by the task loop (stop claiming while quarantined) and the
dispatcher (charge nothing on a quarantined host; leave a retry that failed here to another
host). The policy is the engine's (``after_failure``, ``run_here`` in engine/outcomes.py).
"""
from __future__ import annotations

import logging
import time

from symphony.engine import Engine, HostHealth, describe_error

log = logging.getLogger("symphony.worker")
REFRESH_S = 2.0  # completions are reported, and the peers read, at most this often


class HostState:
    def __init__(self, engine: Engine, host: str):
        self.engine, self.host = engine, host
        self.until = 0.0  # monotonic end of this host's quarantine (0: none known)
        self.peers = 0
        self.streak = 0
        self._read_at = float("-inf")
        self._ok_at = float("-inf")
        self._completed = 0  # completions not reported yet

    def quarantined(self) -> bool:
        return time.monotonic() < self.until

    def left_s(self) -> float:
        return max(0.0, self.until - time.monotonic())

    def report(self, failed: int, completed: int) -> None:
        """Tell Redis about reported outcomes (failures at once, completions at most every few seconds)."""
        now = time.monotonic()
        self._completed += completed
        if not failed and (not self._completed or (now - self._ok_at < REFRESH_S and not self.streak)):
            return
        completed, self._completed = self._completed, 0
        try:
            health = self.engine.report_host(self.host, failed=failed, completed=completed, peers=bool(failed))
        except Exception as exc:  # noqa: BLE001 - the next report tries again; nothing depends on it
            log.debug("could not report this host's health: %s", describe_error(exc))
            self._completed += completed
            return
        if completed:
            self._ok_at = now
        self._apply(health, now, counted=bool(failed))

    def healthy_peers(self) -> int:
        """Other hosts completing tasks now (read again when older than a few seconds)."""
        now = time.monotonic()
        if now - self._read_at > REFRESH_S:
            try:
                self._apply(self.engine.report_host(self.host), now)
            except Exception as exc:  # noqa: BLE001 - then run the task here
                log.debug("could not read the hosts' health: %s", describe_error(exc))
                return 0
        return self.peers

    def _apply(self, health: HostHealth, now: float, counted: bool = True) -> None:
        was = self.quarantined()
        self.streak = health.streak
        if counted:
            self.peers, self._read_at = health.healthy_peers, now
        self.until = now + health.quarantined_s if health.quarantined_s else 0.0
        if self.quarantined() and not was:
            log.warning("host %s is set aside for %.0fs: its attempts kept failing while %d other host(s) completed "
                        "tasks; this worker claims nothing until then, and its failures are not charged",
                        self.host, health.quarantined_s, health.healthy_peers)
        elif was and not self.quarantined():
            log.info("host %s is no longer set aside", self.host)
