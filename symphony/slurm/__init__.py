"""Symphony on SLURM clusters: workers as SLURM jobs, their states tracked, adaptive scaling.

* :mod:`.script`: the batch script of a worker job (``symphony slurm script``);
* :mod:`.submit`: submitting jobs (a job array where it can) and recording their ids in Redis;
* :mod:`.tracker`: moving each job between the accounting sets as SLURM reports its state;
* :mod:`.adapt`: as many jobs as the pool's work needs (dask-jobqueue's ``adapt``);
* :mod:`.client` and :mod:`.states`: SLURM's commands and what they print.

It uses only the engine's public API (the accounting sets live in Redis, through
``Engine.slurm``); neither the engine nor the workers import it. See docs/slurm.md.
"""
from .adapt import AdaptLimits, Adapter, AdaptPlan, plan
from .client import SlurmClient, SlurmError
from .script import ScriptOptions, render, time_limit_s, url_without_password
from .states import expand_ids, job_set, parse_sacct, parse_squeue
from .submit import SubmitInterrupted, SubmitResult, record_jobs, submit
from .tracker import PollReport, Tracker, TrackerThread

__all__ = ["AdaptLimits", "AdaptPlan", "Adapter", "PollReport", "ScriptOptions", "SlurmClient", "SlurmError",
           "SubmitInterrupted", "SubmitResult", "Tracker", "TrackerThread", "expand_ids", "job_set", "parse_sacct",
           "parse_squeue", "plan", "record_jobs", "render", "submit", "time_limit_s", "url_without_password"]
