"""How a task can end, what a session's state can be, the one retry policy, and the one record
of why an item stopped.

The worker that ran a task, its watchdog, and the reaper that reclaims a dead worker's tasks all
decide "retry or stop here" with :func:`after_failure`; nothing else compares attempts with
``max_attempts``.

An item that stops (failed, timed out or cancelled) leaves an :class:`OutcomeRecord` in
``symphony:outcomes:<session>``. Only the Lua scripts write it (``record_outcome`` in
``lua/_prelude.lua``: the worker's report, the reaper, the operator's cancel), so its time is
always the Redis server's, in milliseconds; :meth:`OutcomeRecord.decode` is its only parser.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from symphony.spec import Stage

MAX_ERROR = 2_000  # characters of an error message kept in a record (its head)
MAX_STDERR = 4_000  # characters of a handler's stderr kept in a record (its tail)


class OutcomeKind(str, Enum):
    """How one attempt of a task ended, as a worker reports it (the value is what Redis stores)."""

    DONE = "done"
    RETRY = "retry"  # failed, another attempt follows after a backoff
    HANDBACK = "handback"  # not run to the end (the worker stopped): back to its queue, no attempt charged
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    # not a task at all (undecodable, or no item of its session): set aside in the dead-letter
    # list with the reason, never run, never an item's outcome
    DEADLETTER = "deadletter"

    def __str__(self) -> str:  # the bare value in messages and Lua arguments
        return self.value


STOPPED = (OutcomeKind.FAILED, OutcomeKind.TIMED_OUT, OutcomeKind.CANCELLED)  # the kinds that leave a record
RETRYABLE = (OutcomeKind.FAILED, OutcomeKind.TIMED_OUT)  # what `retry` and `repair --retry-failed` rerun


class SessionState(str, Enum):
    """A session's state. ``ACTIVE`` and ``CANCELLED`` are stored (``symphony:session:<name>``
    field ``state``); ``COMPLETE`` is never stored: the status snapshot says it of an active
    session whose every item is through the last stage with nothing queued or running, so it
    turns back to active by itself when a repair finds outputs missing."""

    ACTIVE = "active"
    CANCELLED = "cancelled"
    COMPLETE = "complete"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: Any) -> "SessionState | str":
        """The state ``value`` names, or ``value`` itself (a string) when it names none."""
        try:
            return cls(value)
        except ValueError:
            return str(value) if value is not None else "?"


@dataclass(frozen=True)
class Decision:
    """What happens to a task after a failed attempt."""

    kind: OutcomeKind  # RETRY, FAILED or TIMED_OUT
    delay_s: float = 0.0  # for RETRY: the backoff before the next attempt
    charged: bool = True  # for RETRY: the attempt counts (False: the host is to blame, not the task)

    @property
    def retries(self) -> bool:
        return self.kind is OutcomeKind.RETRY


# --- hosts that fail everything ---------------------------------------------------------------
# A host whose attempts failed HOST_FAILURE_STREAK times in a row (over all its worker processes,
# no completion in between) while another host is healthy at the same stage, is to blame, not its tasks: it is set
# aside (quarantined) for QUARANTINE_S, during which its workers claim nothing and the failures it
# still reports are not charged. A retry goes to another host when one is healthy at its stage
# (the task message names the host it failed on). Healthy: not quarantined, and over about the last
# HOST_PEER_WINDOW_S (decaying counts) some completions (at least half a one, decayed) and at least HEALTHY_RATIO of its
# attempts completed. When no other host does better, the tasks are to blame (items that fail
# everywhere): nothing is quarantined or moved.
HOST_FAILURE_STREAK = 8
HOST_PEER_WINDOW_S = 60.0
HEALTHY_RATIO = 0.8
QUARANTINE_S = 60.0
ELSEWHERE_DELAY_S = 0.5  # how long a retry that this host must not run waits before another host may claim it


def after_failure(stage: Stage, attempts_made: int, *, timed_out: bool = False,
                  host_quarantined: bool = False) -> Decision:
    """The retry policy of ``stage``: after ``attempts_made`` attempts (this one included) ended in
    failure (``timed_out``: by running past the stage's timeout), retry with backoff while attempts
    remain, else stop as failed or timed out. A timeout is retried only if the stage says so
    (``retry_timeouts``). On a quarantined host (``host_quarantined``) the attempt is not
    charged: the task goes back, as it was, for another host."""
    if host_quarantined:
        return Decision(OutcomeKind.RETRY, stage.backoff(max(1, attempts_made - 1)), charged=False)
    if attempts_made < stage.max_attempts and (stage.retry_timeouts or not timed_out):
        return Decision(OutcomeKind.RETRY, stage.backoff(attempts_made))
    return Decision(OutcomeKind.TIMED_OUT if timed_out else OutcomeKind.FAILED)


def run_here(failed_on: str | None, host: str, healthy_peers: int) -> Decision | None:
    """Whether a claimed retry runs on ``host``: None (run it), or the decision to pass it on
    uncharged, because its last attempt failed on this host and ``healthy_peers`` other hosts
    are completing tasks."""
    if failed_on and failed_on == host and healthy_peers > 0:
        return Decision(OutcomeKind.RETRY, ELSEWHERE_DELAY_S, charged=False)
    return None


class InvalidRecord(ValueError):
    """An outcomes hash held something that is not an outcome record."""


@dataclass(frozen=True)
class OutcomeRecord:
    """Why an item stopped at a stage: the value of ``symphony:outcomes:<session>`` for the item.

    Stored as JSON with exactly the fields of :attr:`FIELDS`; ``at`` is Redis server time in
    milliseconds. ``task`` is the message the item had, so ``retry`` can put it back unchanged
    (metadata, encrypted or not, and its ordinal)."""

    item: str  # the hash field, not part of the JSON
    state: OutcomeKind  # FAILED, TIMED_OUT or CANCELLED
    stage: str
    error: str = ""
    stderr: str = ""
    attempts: int = 0
    worker: str = ""  # the worker that reported it (or lost it); "" for an operator's cancel
    at_ms: int = 0
    task: str = ""

    FIELDS = ("state", "stage", "error", "stderr", "attempts", "worker", "at", "task")

    @property
    def at(self) -> float | None:
        """When it was recorded, in seconds since the epoch (server time), like ``Snapshot.taken_at``."""
        return self.at_ms / 1000 if self.at_ms else None

    def encode(self) -> str:
        """The stored JSON (what ``record_outcome`` in ``lua/_prelude.lua`` writes)."""
        return json.dumps({"state": self.state.value, "stage": self.stage, "error": self.error[:MAX_ERROR],
                           "stderr": self.stderr[-MAX_STDERR:] if self.stderr else "", "attempts": self.attempts,
                           "worker": self.worker, "at": self.at_ms, "task": self.task},
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, item: str, raw: str | bytes) -> "OutcomeRecord":
        """Parse a stored record; :class:`InvalidRecord` says why when it is not one.

        Records written before every path used server milliseconds may carry ``at`` in seconds;
        they are read as such."""
        try:
            data = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidRecord(f"outcome of {item!r} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InvalidRecord(f"outcome of {item!r} is not a JSON object")
        try:
            state = OutcomeKind(data.get("state"))
        except ValueError:
            raise InvalidRecord(f"outcome of {item!r} has no valid state ({data.get('state')!r})") from None
        at = data.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at <= 0:
            at_ms = 0
        else:
            at_ms = int(round(at * 1000)) if at < 1e11 else int(at)
        return cls(item=item, state=state, stage=str(data.get("stage") or ""), error=str(data.get("error") or ""),
                   stderr=str(data.get("stderr") or ""), attempts=_int(data.get("attempts")),
                   worker=str(data.get("worker") or ""), at_ms=at_ms, task=str(data.get("task") or ""))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
