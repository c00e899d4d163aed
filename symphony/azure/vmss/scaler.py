"""``symphony scale vmss``: a VM scale set's capacity follows the pool's queued and running work.

Every interval:

1. the pool's work: tasks queued, retrying or running at its stages, over the active sessions;
2. the wanted capacity, ``clamp(ceil(work / per_vm), min, max)``, reached at most ``max_step``
   VMs per change and no sooner than ``cooldown`` after the previous change, whichever process
   made it (its time is kept in Redis per scale set: ``--once`` from cron keeps the cooldown);
3. scaling out sets the scale set's capacity (one ARM ``PATCH``); VMs being drained are
   undrained first, since they are already there;
4. scaling in never deletes a VM that runs tasks: the scaler drains the VM's workers (they stop
   claiming, finish what they run, stay up idle), and deletes that instance (one ARM ``POST
   .../delete``) once none of its workers runs a task. Idle VMs go first, then the least busy.

Azure's errors never end it: throttling (429, honouring Retry-After), 403 (the role the identity
lacks), expired credentials, a missing scale set and network errors each give one clear message
(again only when it changes), then a retry with backoff (up to 15 min).
"""
from __future__ import annotations

import logging
import math
import random
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from symphony.engine import ConfigError, describe_error

from .arm import Instance

log = logging.getLogger("symphony.scale")
MAX_BACKOFF_S = 900.0
DRAINED_BY = "symphony scale vmss"  # the drains this scaler made (and may finish by deleting the VM)


class Fleet(Protocol):
    """What the scaler needs of Symphony (EngineFleet: the engine's public API)."""

    def work(self, pool: str) -> int: ...

    def busy_hosts(self) -> dict[str, int]:
        """Running tasks per host, over every live worker."""

    def drained_hosts(self) -> set[str]:
        """The hosts this scaler drained."""

    def held_hosts(self) -> set[str]:
        """Hosts someone else drained: never chosen, never deleted."""

    def drain_host(self, host: str) -> None: ...

    def undrain_host(self, host: str) -> None: ...

    def cooldown_left(self, scale_set: str) -> float:
        """Seconds until the scale set may change again (0: now), whoever changed it last."""

    def start_cooldown(self, scale_set: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class ScaleLimits:
    minimum: int = 0
    maximum: int = 20
    per_vm: int = 1
    max_step: int = 5
    cooldown_s: float = 300.0
    interval_s: float = 60.0

    def check(self) -> None:
        if self.minimum < 0 or self.maximum < 1 or self.minimum > self.maximum:
            raise ConfigError("--min and --max must satisfy 0 <= --min <= --max and --max >= 1")
        if self.per_vm < 1 or self.max_step < 1:
            raise ConfigError("--per-vm and --max-step must be at least 1")
        if self.cooldown_s < 0 or self.interval_s <= 0:
            raise ConfigError("--cooldown must be 0 or more and --interval positive")


def wanted(work: int, capacity: int, limits: ScaleLimits) -> int:
    """The capacity to go to now (pure: the policy, tested on its own)."""
    goal = max(limits.minimum, min(limits.maximum, math.ceil(max(0, work) / limits.per_vm)))
    if goal > capacity:
        return min(goal, capacity + limits.max_step)
    if goal < capacity:
        return max(goal, capacity - limits.max_step)
    return capacity


@dataclass
class ScaleStep:
    """What one round saw and did."""

    work: int = 0
    capacity: int = 0
    target: int = 0
    set_capacity: int | None = None
    draining: tuple[str, ...] = ()  # hosts being drained (their VMs leave once idle)
    deleted: tuple[str, ...] = ()  # instance ids deleted this round
    undrained: tuple[str, ...] = ()
    cooling: bool = False  # a change was due but the cooldown held it
    problem: str = ""


@dataclass
class _State:
    last_problem: str = ""
    failures: int = 0


class VmssScaler:
    def __init__(self, fleet: Fleet, arm, pool: str, limits: ScaleLimits):
        limits.check()
        self.fleet, self.arm, self.pool, self.limits = fleet, arm, pool, limits
        self.state = _State()
        self.history: list[ScaleStep] = []

    # --- one round ---------------------------------------------------------------------------------
    def step(self) -> ScaleStep:
        """One round; Azure errors are caught, said once, and returned in ``problem``."""
        try:
            result = self._step()
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - Azure or Redis: one clear message, then backoff
            result = ScaleStep(problem=self._problem(exc))
        else:
            if self.state.last_problem:
                log.info("scale set %s answers again", self.arm.name)
            self.state.last_problem, self.state.failures = "", 0
        self.history.append(result)
        del self.history[:-1000]
        return result

    def _step(self) -> ScaleStep:
        work = self.fleet.work(self.pool)
        capacity = self.arm.capacity()
        by_host = {i.computer_name: i for i in self.arm.instances() if not i.leaving}
        drained = self.fleet.drained_hosts() & set(by_host)
        step = ScaleStep(work=work, capacity=capacity, target=wanted(work, capacity, self.limits))
        self._undrain_wanted(step, drained)
        staying = capacity - len(drained)
        change_due = not step.undrained and (step.target > capacity or step.target < staying)
        if change_due and self.fleet.cooldown_left(self.arm.target) > 0:
            step.cooling = True
        elif change_due and step.target > capacity:
            self.arm.set_capacity(step.target)
            step.set_capacity = step.target
            self.fleet.start_cooldown(self.arm.target, self.limits.cooldown_s)
            log.info("work %d, %d VM(s) at %d task(s) each: capacity %d -> %d", work, capacity,
                     self.limits.per_vm, capacity, step.target)
        elif change_due:
            self._drain_for_scale_in(step, by_host, drained, staying - step.target)
            self.fleet.start_cooldown(self.arm.target, self.limits.cooldown_s)
        if drained:
            self._delete_idle(step, by_host, drained)
        return step

    def _undrain_wanted(self, step: ScaleStep, drained: set[str]) -> None:
        """VMs on their way out are the quickest capacity when the work comes back."""
        staying = step.capacity - len(drained)
        if step.target <= staying or not drained:
            return
        back = sorted(drained)[: step.target - staying]
        for host in back:
            self.fleet.undrain_host(host)
        drained -= set(back)
        step.undrained = tuple(back)
        log.info("work %d: undrained %s (wanted again)", step.work, ", ".join(back))

    def _drain_for_scale_in(self, step: ScaleStep, by_host: dict[str, Instance], drained: set[str],
                            count: int) -> None:
        """Drain ``count`` VMs: idle ones first, then the least busy; never one someone else drained."""
        busy = self.fleet.busy_hosts()
        held = self.fleet.held_hosts()
        candidates = sorted((h for h in by_host if h not in drained and h not in held),
                            key=lambda h: (busy.get(h, 0), h))
        for host in candidates[:count]:
            self.fleet.drain_host(host)
            drained.add(host)
            log.info("work %d: draining %s (%d running task(s)) before deleting it", step.work, host,
                     busy.get(host, 0))

    def _delete_idle(self, step: ScaleStep, by_host: dict[str, Instance], drained: set[str]) -> None:
        """Delete the drained VMs whose workers run no task; the others wait for a later round."""
        busy = self.fleet.busy_hosts()
        idle = sorted(h for h in drained if busy.get(h, 0) == 0)
        if idle:
            ids = [by_host[h].instance_id for h in idle]
            self.arm.delete_instances(ids)
            for host in idle:
                self.fleet.undrain_host(host)  # the name may come back with a new VM
            log.info("deleted %d drained idle VM(s): %s", len(idle), ", ".join(idle))
            step.deleted = tuple(ids)
            drained -= set(idle)
        step.draining = tuple(sorted(drained))

    # --- problems ----------------------------------------------------------------------------------
    def _problem(self, exc: BaseException) -> str:
        from symphony.azure.monitor.problems import FORBIDDEN, THROTTLED, classify

        problem = classify(exc, f"scaling {self.arm.name}")
        message = problem.message
        if problem.kind == FORBIDDEN:
            message = (f"the Azure identity is not allowed (403) to manage scale set {self.arm.name}: "
                       f"{message.split(': ', 1)[-1].split('. Give it', 1)[0]}. Give it the 'Virtual Machine "
                       f"Contributor' role on the scale set (or its resource group)")
        elif problem.kind == "failed" and not type(exc).__module__.startswith("azure"):
            message = f"scaling {self.arm.name}: {describe_error(exc)}"
        self.state.failures += 1
        delay = self.backoff_s(problem.retry_after_s if problem.kind == THROTTLED else None)
        if message != self.state.last_problem:
            log.warning("%s; trying again in %.0fs", message, delay)
            self.state.last_problem = message
        self._next_delay = delay
        return message

    def backoff_s(self, retry_after: float | None = None) -> float:
        base = min(MAX_BACKOFF_S, self.limits.interval_s * (2 ** max(0, self.state.failures - 1)))
        if retry_after is not None:
            base = max(base, retry_after)
        return min(MAX_BACKOFF_S, base) * (1.0 + random.random() * 0.1)

    _next_delay: float = 0.0

    def run(self, stop: threading.Event, on_step: Callable[[ScaleStep], None] | None = None) -> None:
        while not stop.is_set():
            result = self.step()
            if on_step is not None:
                on_step(result)
            stop.wait(self._next_delay if result.problem else self.limits.interval_s)


@dataclass
class EngineFleet:
    """The Fleet of the engine's public API: the pool's work, the workers' hosts, drains."""

    engine: object

    def work(self, pool: str) -> int:
        roles = set(self.engine.roles_for(pool))
        snap = self.engine.snapshot(events=0)
        active = {s.name for s in snap.sessions if s.state == "active"}
        return sum(q.queued + q.delayed + q.in_flight for q in snap.queues if q.role in roles and q.session in active)

    def busy_hosts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.engine.snapshot(events=0).workers:
            if w.state in ("stale", "dead"):
                continue
            if w.current or w.state == "busy":
                out[w.host] = out.get(w.host, 0) + 1
        return out

    def drained_hosts(self) -> set[str]:
        """The hosts this scaler drained (an operator's drain of a host is left alone: never deleted)."""
        return {d.target for d in self.engine.drains() if d.kind == "host" and d.by == DRAINED_BY}

    def held_hosts(self) -> set[str]:
        return {d.target for d in self.engine.drains() if d.kind == "host" and d.by != DRAINED_BY}

    def drain_host(self, host: str) -> None:
        # idle: the workers stay up without claiming (not restarted, not exiting) until the VM goes
        self.engine.drain(host=host, idle=True, by=DRAINED_BY)

    def undrain_host(self, host: str) -> None:
        self.engine.undrain(host=host, by=DRAINED_BY)

    def cooldown_left(self, scale_set: str) -> float:
        return self.engine.cooldown_left(scale_set)

    def start_cooldown(self, scale_set: str, seconds: float) -> None:
        self.engine.start_cooldown(scale_set, seconds)
