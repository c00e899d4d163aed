"""A worker process's heart: a thread that beats, reaps and follows the registry.

* **Heartbeat**: at a fixed rate (time spent reaping or waiting for Redis never pushes the next
  beat back: a silence of more than half a lease looks like an outage to everyone), it renews
  the lease on every task the process holds and publishes what the process is doing
  (``info()``: host, pid, state, CPU and memory, ...).
* **Reaping**: the beat returns the workers whose lease lapsed; the heart reclaims their tasks
  (under the reaper lock), and looks again when the earliest lease of another worker runs out.
* **Registry**: when the registry's epoch changes it reads the change log's new entries and
  forgets the cached definitions of the sessions named there only (``Engine.follow_registry``);
  when Redis no longer knows this worker (its lease was reclaimed, or Redis lost its data, when
  the epoch proves nothing) it forgets them all. Then it calls ``registry_changed(changes)`` (the
  loop re-reads its roles; a running task of a cancelled session is stopped).

Handler code never runs in this process (Python handlers run in the executor, commands in their
own processes), so nothing a handler does can starve this thread.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from symphony.engine import Engine, WorkerLink, describe_error, is_out_of_memory

log = logging.getLogger("symphony.worker")


class Heart(threading.Thread):
    def __init__(self, engine: Engine, link: WorkerLink, *, heartbeat_s: float, lease_s: float,
                 info: Callable[[], dict[str, object]], registry_changed: Callable[[object], None],
                 host_metrics=None, log_ttl_ms: int | None = None,
                 after_beat: Callable[[], None] | None = None, memory=None):
        super().__init__(name="heartbeat", daemon=True)
        self.engine, self.link = engine, link
        self.heartbeat_s, self.lease_s = heartbeat_s, lease_s
        self.info, self.registry_changed = info, registry_changed
        self.host_metrics = host_metrics
        self.log_ttl_ms = log_ttl_ms  # the worker's log stream lives as long as its hash
        self.after_beat = after_beat  # looks for a drain of this worker (process.py)
        self.memory = memory  # MemoryNotice: Redis out of memory, said once (workers/memory.py)
        self.epoch: str | None = None  # the registry's epoch at the last beat
        self.known = False  # the last beat found this worker registered
        self._exit = threading.Event()
        self._down_since: float | None = None
        self._wake = float("inf")  # monotonic: when this thread next needs Redis (due_in)

    def stop(self) -> None:
        self._exit.set()
        self.join(timeout=5)

    def due_in(self) -> float:
        """Seconds until this thread next needs Redis (its next beat, or a look at lapsed leases):
        the loop ends its blocking wait by then, since both share one connection (engine/sharing.py)."""
        return self._wake - time.monotonic()

    def run(self) -> None:
        next_beat = 0.0
        next_check: float | None = None
        while not self._exit.is_set():
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_s  # fixed rate
                next_check = self.beat()  # (_wake stays in the past meanwhile: the loop keeps off Redis)
            elif next_check is not None and now >= next_check:
                next_check = None
                self.reap(None)
            wake = next_beat if next_check is None else min(next_beat, next_check)
            self._wake = wake
            self._exit.wait(max(0.01, wake - time.monotonic()))

    def beat(self) -> float | None:
        """One heartbeat; returns when to look for lapsed leases again (monotonic), if before the next beat."""
        try:
            info = self.info()
            beat = self.link.beat(self.heartbeat_s, self.lease_s, info)
        except Exception as exc:  # noqa: BLE001 - Redis unavailable: the loop says so; beat again on time
            if self.memory is not None and is_out_of_memory(exc):
                self.memory.refused()
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.debug("heartbeat failed: %s", describe_error(exc))
            return None
        self._down_since = None
        if self.memory is not None:
            self.memory.accepted()
        self._record_host(beat.now_ms, info)
        self._keep_log()
        if self.after_beat is not None:
            try:
                self.after_beat()
            except Exception as exc:  # noqa: BLE001 - looked at again at the next beat
                log.debug("could not read this worker's drain: %s", describe_error(exc))
        lost = self.known and not beat.known
        if lost:
            log.warning("Redis no longer knew this worker: its lease lapsed and its tasks were reclaimed, "
                        "or Redis lost its data; reading the registry again")
        self.known = True
        if lost or beat.epoch != self.epoch:
            self._follow_registry(beat.epoch, lost)
        if beat.lapsed:
            self.reap(beat.lapsed)
        if beat.earliest_expiry_ms is not None:
            until = (beat.earliest_expiry_ms - beat.now_ms) / 1000 + 0.05
            if 0 < until < self.heartbeat_s:
                return time.monotonic() + until
        return None

    def _follow_registry(self, epoch: str, lost: bool) -> None:
        """Read the registry's changes since the last beat (only the sessions named there), or
        everything after Redis lost its data (the epoch starts again and may look unchanged)."""
        try:
            changes = self.engine.follow_registry(lost=lost)
        except Exception as exc:  # noqa: BLE001 - the epoch stays unseen: tried again at the next beat
            log.debug("reading the registry's changes failed: %s", describe_error(exc))
            return
        self.epoch = epoch
        try:
            self.registry_changed(changes)
        except Exception as exc:  # noqa: BLE001 - tried again at the next change
            log.debug("following the registry failed: %s", describe_error(exc))

    def reap(self, lapsed) -> None:
        try:
            self.engine.reap(lapsed, lock_ttl_s=max(5.0, self.lease_s))
        except Exception as exc:  # noqa: BLE001 - another worker or the next beat reaps them
            log.debug("reap failed: %s", describe_error(exc))

    def _keep_log(self) -> None:
        if self.log_ttl_ms is None:
            return
        try:
            self.engine.keep_worker_log(self.link.worker_id, ttl_ms=self.log_ttl_ms)
        except Exception as exc:  # noqa: BLE001 - the next beat tries again
            log.debug("could not renew the log's TTL: %s", describe_error(exc))

    def _record_host(self, now_ms: int, info: dict[str, object]) -> None:
        """The host's sample for the console's history: one call per time bucket at most, and
        Redis keeps one sample per host per bucket however many of its processes offer one."""
        if self.host_metrics is None:
            return
        try:
            self.host_metrics.offer(now_ms, info)
        except Exception as exc:  # noqa: BLE001 - metrics must never disturb the heartbeat
            log.debug("could not record host metrics: %s", describe_error(exc))
