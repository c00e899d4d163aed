"""SLURM's job states and what squeue and sacct print, turned into the accounting sets.

``squeue`` knows every job the controller still holds: pending, running, and finished ones for
``MinJobAge`` seconds (300 by default) after they end. ``sacct`` (only with accounting storage)
knows every job ever run. Both are asked for all tracked jobs in one call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from symphony.engine import JobSet, Observation

# SLURM's final states (squeue State, sacct State) and the set a job in that state belongs in;
# every other state (PENDING, RUNNING, SUSPENDED, COMPLETING, REQUEUED, ...) is PENDING_AND_RUNNING.
FINAL_STATES: dict[str, JobSet] = {
    "COMPLETED": JobSet.COMPLETED,
    "FAILED": JobSet.FAILED,
    "BOOT_FAIL": JobSet.FAILED,
    "DEADLINE": JobSet.FAILED,
    "SPECIAL_EXIT": JobSet.FAILED,
    "TIMEOUT": JobSet.TIMEOUT,
    "CANCELLED": JobSet.CANCELLED,
    "REVOKED": JobSet.CANCELLED,  # a federated sibling that another cluster ran
    "OUT_OF_MEMORY": JobSet.OUT_OF_MEMORY,
    "NODE_FAIL": JobSet.NODE_FAIL,
    "PREEMPTED": JobSet.PREEMPTED,
}
PENDING = "PENDING"

# squeue --Format fields, each ended by "|" (no width: nothing is truncated); Reason comes last
SQUEUE_FIELDS = ("JobArrayID", "JobID", "State", "exit_code", "StartTime", "EndTime", "NodeList", "Reason")
SQUEUE_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)
SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "Start", "End", "NodeList", "Reason")
SACCT_FORMAT = ",".join(SACCT_FIELDS)

_ARRAY = re.compile(r"^(\d+)_\[([0-9,\-%]+)\]$")


def job_set(state: str) -> JobSet:
    """The accounting set of a job in SLURM state ``state`` ("CANCELLED by 1000" counts as CANCELLED)."""
    # a state this table does not know yet stays live: a job SLURM has forgotten becomes UNKNOWN
    # in the tracker anyway, and a live job must never be counted as finished
    return FINAL_STATES.get(base_state(state), JobSet.PENDING_AND_RUNNING)


def base_state(state: str) -> str:
    return state.strip().split(" ")[0].rstrip("+").upper()


def exit_code(status: str) -> str:
    """squeue's exit_code is a wait status (768: exit 3; 15: signal 15); scontrol and sacct show
    "exit:signal". Returns the "exit:signal" form ('' when unknown)."""
    status = status.strip()
    if not status or status in ("N/A", "(null)"):
        return ""
    if ":" in status:
        return status
    try:
        value = int(status)
    except ValueError:
        return status
    signal = value & 0x7F
    return f"0:{signal}" if signal else f"{(value >> 8) & 0xFF}:0"


def timestamp(text: str) -> float | None:
    """SLURM's local ISO time ("2026-12-01T09:44:16") as epoch seconds; None for N/A, NONE, Unknown."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def expand_ids(job_id: str) -> list[str]:
    """sacct prints the not yet started tasks of an array as one line, ``1234_[2-5,7%2]``:
    the tracked ids they stand for (``1234_2`` ... ``1234_7``)."""
    match = _ARRAY.match(job_id.strip())
    if not match:
        return [job_id.strip()]
    base, spec = match.group(1), match.group(2).split("%")[0]
    out: list[str] = []
    for part in spec.split(","):
        if "-" in part:
            low, _, high = part.partition("-")
            out.extend(f"{base}_{i}" for i in range(int(low), int(high) + 1))
        elif part:
            out.append(f"{base}_{part}")
    return out


@dataclass(frozen=True)
class Seen:
    """One line of squeue or sacct, for one tracked id."""

    id: str
    job_id: str
    state: str
    exit_code: str
    started: float | None
    ended: float | None
    node: str
    reason: str

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def observation(self) -> Observation:
        return Observation(id=self.id, set=job_set(self.state), state=self.state,
                           reason="" if self.reason in ("None", "(null)") else self.reason,
                           exit_code=self.exit_code, node=self.node, job_id=self.job_id,
                           started=self.started, ended=self.ended)


def parse_squeue(text: str) -> dict[str, Seen]:
    """Lines of ``squeue --noheader --Format=SQUEUE_FORMAT``, by tracked id."""
    out: dict[str, Seen] = {}
    for line in text.splitlines():
        parts = line.split("|", len(SQUEUE_FIELDS) - 1)
        if len(parts) < len(SQUEUE_FIELDS):
            continue
        array_id, job_id, state, status, start, end, nodes, reason = (p.strip() for p in parts)
        reason = reason.rstrip("|").strip()
        out[array_id] = Seen(id=array_id, job_id=job_id, state=base_state(state), exit_code=exit_code(status),
                             started=timestamp(start), ended=timestamp(end),
                             node="" if nodes in ("(null)", "") else nodes, reason=reason)
    return out


def parse_sacct(text: str) -> dict[str, Seen]:
    """Lines of ``sacct --noheader --parsable2 --allocations --format=SACCT_FORMAT``, by tracked id."""
    out: dict[str, Seen] = {}
    for line in text.splitlines():
        parts = line.split("|", len(SACCT_FIELDS) - 1)
        if len(parts) < len(SACCT_FIELDS) - 1:
            continue
        parts += [""] * (len(SACCT_FIELDS) - len(parts))
        job, raw, state, code, start, end, nodes, reason = (p.strip() for p in parts)
        for tracked in expand_ids(job):
            out[tracked] = Seen(id=tracked, job_id=raw if tracked == job else "", state=base_state(state),
                                exit_code=exit_code(code), started=timestamp(start), ended=timestamp(end),
                                node="" if nodes in ("None assigned", "(null)") else nodes, reason=reason)
    return out
