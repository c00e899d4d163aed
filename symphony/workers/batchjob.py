"""The SLURM job a worker runs in: its ids for the heartbeat, and its time limit.

Everything comes from the environment SLURM gives a job (``SLURM_JOB_ID``, ``SLURM_ARRAY_JOB_ID``,
``SLURM_ARRAY_TASK_ID``, ``SLURM_CLUSTER_NAME``) and from the variables the batch script of
``symphony slurm script`` exports:

* ``SYMPHONY_JOB_END``: when the job's time limit ends (epoch seconds);
* ``SYMPHONY_JOB_WARNING``: how long before the end SLURM sends its warning signal (``SIGUSR1``,
  ``#SBATCH --signal=B:USR1@<warning>``), and so when the worker stops claiming if no signal came;
* ``SYMPHONY_JOB_MARGIN``: running tasks that have not finished this long before the end are
  handed back (their queue gets them again at once, no attempt is charged);
* ``SYMPHONY_JOB_TERM_GRACE``: after SIGTERM (``scancel``, the time limit itself, preemption)
  SLURM kills the job's processes ``KillWait`` seconds later (30 by default): running tasks are
  handed back after this grace.

A job killed anyway (``SIGKILL``, a node that fails) loses nothing either: its tasks come back
when its lease lapses, like those of any worker that vanished.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

from symphony.engine import slurm_origin

DEFAULT_WARNING_S = 300.0
DEFAULT_MARGIN_S = 30.0
DEFAULT_TERM_GRACE_S = 20.0


def _float(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    try:
        return float(env[name]) if env.get(name, "").strip() else default
    except ValueError:
        return default


@dataclass
class BatchJob:
    """This process's SLURM job (``job_id`` is '' outside SLURM) and its walltime deadlines."""

    job_id: str = ""
    array_id: str = ""  # "<array job id>_<task id>" for an array task
    cluster: str = ""
    end: float | None = None  # epoch seconds
    warning_s: float = DEFAULT_WARNING_S
    margin_s: float = DEFAULT_MARGIN_S
    term_grace_s: float = DEFAULT_TERM_GRACE_S
    stop_at: float | None = None  # epoch seconds: stop claiming from then on
    handback_at: float | None = None  # epoch seconds: hand running tasks back from then on

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "BatchJob":
        env = os.environ if env is None else env
        job_id = env.get("SLURM_JOB_ID", "").strip()
        array_job, task = env.get("SLURM_ARRAY_JOB_ID", "").strip(), env.get("SLURM_ARRAY_TASK_ID", "").strip()
        job = cls(job_id=job_id, array_id=f"{array_job}_{task}" if job_id and array_job and task else "",
                  cluster=env.get("SLURM_CLUSTER_NAME", "").strip() if job_id else "",
                  end=_float(env, "SYMPHONY_JOB_END", None) if job_id else None,
                  warning_s=_float(env, "SYMPHONY_JOB_WARNING", DEFAULT_WARNING_S) or 0.0,
                  margin_s=_float(env, "SYMPHONY_JOB_MARGIN", DEFAULT_MARGIN_S) or 0.0,
                  term_grace_s=_float(env, "SYMPHONY_JOB_TERM_GRACE", DEFAULT_TERM_GRACE_S) or 0.0)
        if job.end is not None:
            job.stop_at = job.end - job.warning_s
            job.handback_at = job.end - job.margin_s
        return job

    @property
    def in_job(self) -> bool:
        return bool(self.job_id)

    @property
    def tracked_id(self) -> str:
        """The id ``symphony slurm`` records the job under: the array task's, else the job's."""
        return self.array_id or self.job_id

    def origin(self) -> str | None:
        """The name the key/values of tasks run here are listed under (``symphony slurm jobs``)."""
        if not self.in_job:
            return None
        return slurm_origin(self.cluster, self.tracked_id)

    def heartbeat_fields(self) -> dict[str, object]:
        if not self.in_job:
            return {}
        return {"slurm_job": self.job_id, "slurm_array": self.array_id,
                "job_end": round(self.end, 3) if self.end is not None else ""}

    # --- the walltime --------------------------------------------------------------------------
    def warned(self, now: float | None = None) -> None:
        """SLURM's warning signal arrived: the end is at most ``warning_s`` away (SLURM may send
        it early, never late), so stop claiming now and hand back ``margin_s`` before the end."""
        now = time.time() if now is None else now
        end = now + self.warning_s if self.end is None else min(self.end, now + self.warning_s)
        self.stop_at = now
        self.handback_at = min(self.handback_at or end, end - self.margin_s)

    def terminated(self, now: float | None = None) -> None:
        """SIGTERM inside a SLURM job: SIGKILL follows after KillWait; hand back after the grace."""
        now = time.time() if now is None else now
        self.stop_at = now
        self.handback_at = min(self.handback_at or now + self.term_grace_s, now + self.term_grace_s)

    def due(self, now: float | None = None) -> tuple[bool, bool]:
        """(stop claiming, hand running tasks back) at ``now``."""
        now = time.time() if now is None else now
        return (self.stop_at is not None and now >= self.stop_at,
                self.handback_at is not None and now >= self.handback_at)
