"""What a worker process knows of its host's health: it reports the host's failed attempts and
(now and then) its completions, per stage, and learns whether the host is quarantined and how
many other hosts are healthy at a stage. Shared by the task loop (stop claiming while
quarantined) and the dispatcher (charge nothing on a quarantined host; leave a retry that failed
here to another host healthy at its stage). The policy is the engine's (``after_failure``,
``run_here`` in engine/outcomes.py).
"""
from __future__ import annotations

import logging
import time
from collections import Counter

from symphony.engine import Engine, HostHealth, describe_error

log = logging.getLogger("symphony.worker")
REFRESH_S = 2.0  # completions are reported, and the peers read again, at most this often


class HostState:
    def __init__(self, engine: Engine, host: str):
        self.engine, self.host = engine, host
        self.until = 0.0  # monotonic end of this host's quarantine (0: none known)
        self.streak = 0
        self._peers: dict[str, tuple[int, float]] = {}  # stage -> (healthy peers, when read)
        self._ok_at = float("-inf")
        self._completed: Counter[str] = Counter()  # completions by stage, not reported yet

    def quarantined(self) -> bool:
        return time.monotonic() < self.until

    def left_s(self) -> float:
        return max(0.0, self.until - time.monotonic())

    def report(self, failed: Counter, completed: Counter) -> None:
        """Tell Redis about reported outcomes by stage (failures at once, completions at most
        every few seconds)."""
        now = time.monotonic()
        self._completed.update(completed)
        due = self._completed and (now - self._ok_at >= REFRESH_S or self.streak)
        if not failed and not due:
            return
        pending = self._completed if due else Counter()
        self._completed = Counter() if due else self._completed
        for stage in set(failed) | set(pending):
            try:
                health = self.engine.report_host(self.host, stage, failed=failed.get(stage, 0),
                                                 completed=pending.get(stage, 0), peers=bool(failed.get(stage)))
            except Exception as exc:  # noqa: BLE001 - the next report tries again; nothing depends on it
                log.debug("could not report this host's health: %s", describe_error(exc))
                self._completed.update({stage: pending.get(stage, 0)})
                continue
            self._apply(health, stage, now, counted=bool(failed.get(stage)))
        if due:
            self._ok_at = now

    def healthy_peers(self, stage: str) -> int:
        """Other hosts healthy at ``stage`` now (read again when older than a few seconds)."""
        now = time.monotonic()
        peers, at = self._peers.get(stage, (0, float("-inf")))
        if now - at > REFRESH_S:
            try:
                self._apply(self.engine.report_host(self.host, stage), stage, now)
            except Exception as exc:  # noqa: BLE001 - then run the task here
                log.debug("could not read the hosts' health: %s", describe_error(exc))
                return 0
            peers = self._peers[stage][0]
        return peers

    def _apply(self, health: HostHealth, stage: str, now: float, counted: bool = True) -> None:
        was = self.quarantined()
        self.streak = health.streak
        if counted:
            if len(self._peers) > 256:
                self._peers.clear()
            self._peers[stage] = (health.healthy_peers, now)
        self.until = now + health.quarantined_s if health.quarantined_s else 0.0
        if self.quarantined() and not was:
            log.warning("host %s is set aside for %.0fs: its attempts kept failing while %d other host(s) completed "
                        "tasks of stage %s; this worker claims nothing until then, and its failures are not charged",
                        self.host, health.quarantined_s, health.healthy_peers, stage)
        elif was and not self.quarantined():
            log.info("host %s is no longer set aside", self.host)
