"""How a task can end, what a session's state can be, and the one retry policy.

The worker that ran a task, its watchdog, and the reaper that reclaims a dead worker's tasks all
decide "retry or stop here" with :func:`after_failure`; nothing else compares attempts with
``max_attempts``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from symphony.spec import Stage


class OutcomeKind(str, Enum):
    """How one attempt of a task ended, as a worker reports it (the value is what Redis stores)."""

    DONE = "done"
    RETRY = "retry"  # failed, another attempt follows after a backoff
    HANDBACK = "handback"  # not run to the end (the worker stopped): back to its queue, no attempt charged
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # the bare value in messages and Lua arguments
        return self.value


class SessionState(str, Enum):
    """A registered session's state (``symphony:session:<name>`` field ``state``)."""

    ACTIVE = "active"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Decision:
    """What happens to a task after a failed attempt."""

    kind: OutcomeKind  # RETRY, FAILED or TIMED_OUT
    delay_s: float = 0.0  # for RETRY: the backoff before the next attempt

    @property
    def retries(self) -> bool:
        return self.kind is OutcomeKind.RETRY


def after_failure(stage: Stage, attempts_made: int, *, timed_out: bool = False) -> Decision:
    """The retry policy of ``stage``: after ``attempts_made`` attempts (this one included) ended in
    failure (``timed_out``: by running past the stage's timeout), retry with backoff while attempts
    remain, else stop as failed or timed out. A timeout is retried only if the stage says so
    (``retry_timeouts``)."""
    if attempts_made < stage.max_attempts and (stage.retry_timeouts or not timed_out):
        return Decision(OutcomeKind.RETRY, stage.backoff(attempts_made))
    return Decision(OutcomeKind.TIMED_OUT if timed_out else OutcomeKind.FAILED)
