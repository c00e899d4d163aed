"""Submitting worker jobs, and recording each SLURM job id in Redis under its tag.

N jobs go in as one job array where the cluster allows it (``MaxArraySize``; tasks ``0..N-1``,
tracked as ``<array job id>_<task>``), else as single jobs. Redis is checked before anything is
submitted; each sbatch call is recorded as soon as it returned, so an interruption leaves every
submitted job either recorded or named in the error, with the command that records it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from symphony.engine import Engine, SymphonyError

from .client import SlurmClient, SlurmError


class SubmitInterrupted(SymphonyError):
    """Some jobs were submitted but could not be recorded (or the rest could not be submitted)."""

    def __init__(self, message: str, recorded: Sequence[str], unrecorded: Sequence[str]):
        super().__init__(message)
        self.recorded, self.unrecorded = tuple(recorded), tuple(unrecorded)


@dataclass(frozen=True)
class SubmitResult:
    tag: str
    pool: str
    cluster: str
    ids: tuple[str, ...]
    sbatch_calls: int
    arrays: tuple[str, ...] = field(default=())  # array job ids (empty: single jobs)


def _chunks(jobs: int, max_array: int, use_array: bool) -> list[int]:
    """How many tasks each sbatch call submits (1 = a single job, not an array)."""
    if jobs <= 1 or not use_array or max_array <= 1:
        return [1] * jobs
    return [min(max_array, jobs - i) for i in range(0, jobs, max_array)]


def record_jobs(engine: Engine, tag: str, pool: str, cluster: str, ids: Sequence[str], *, array: str = "",
                submitted: float | None = None) -> int:
    at = round(time.time() if submitted is None else submitted, 3)
    records = []
    for job_id in ids:
        record = {"pool": pool, "state": "PENDING", "submitted": at}
        if array:
            record["array"] = array
        else:
            record["job_id"] = job_id
        records.append((job_id, record))
    return engine.slurm.record(tag, records, pool=pool, cluster=cluster)


def submit(engine: Engine, slurm: SlurmClient, script: str, *, tag: str, pool: str, jobs: int,
           use_array: bool = True, sbatch_args: Sequence[str] = ()) -> SubmitResult:
    """Submit ``jobs`` copies of ``script`` and record them under ``tag``."""
    if jobs < 1:
        raise SymphonyError("--jobs must be at least 1")
    engine.ping()  # Redis first: nothing is submitted that could not be recorded
    cluster = slurm.cluster()
    chunks = _chunks(jobs, slurm.max_array_size(), use_array)
    recorded: list[str] = []
    arrays: list[str] = []
    calls = 0
    for index, size in enumerate(chunks):
        args = list(sbatch_args)
        if size > 1:
            args.append(f"--array=0-{size - 1}")
        try:
            job_id = slurm.sbatch(script, args)
        except SlurmError as exc:
            if size > 1 and "array" in str(exc).lower() and not recorded:  # arrays refused here: single jobs
                return submit(engine, slurm, script, tag=tag, pool=pool, jobs=jobs, use_array=False,
                              sbatch_args=sbatch_args)
            if not recorded:
                raise
            left = sum(chunks[index:])
            raise SubmitInterrupted(f"{exc}; {len(recorded)} job(s) were submitted and recorded under tag {tag} "
                                    f"({', '.join(recorded[:10])}{' ...' if len(recorded) > 10 else ''}); "
                                    f"submit the other {left} with --jobs {left}", recorded, ()) from None
        calls += 1
        ids = [f"{job_id}_{i}" for i in range(size)] if size > 1 else [job_id]
        try:
            record_jobs(engine, tag, pool, cluster, ids, array=job_id if size > 1 else "")
        except Exception as exc:
            raise SubmitInterrupted(
                f"SLURM accepted job(s) {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''} but they could not be "
                f"recorded in Redis ({exc}); record them with: symphony slurm adopt --tag {tag} --pool {pool} "
                f"{job_id if size == 1 else job_id + '_[0-' + str(size - 1) + ']'}", recorded, ids) from None
        recorded.extend(ids)
        if size > 1:
            arrays.append(job_id)
    return SubmitResult(tag=tag, pool=pool, cluster=cluster, ids=tuple(recorded), sbatch_calls=calls,
                        arrays=tuple(arrays))
