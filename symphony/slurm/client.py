"""SLURM's command-line tools (sbatch, squeue, sacct, scancel, scontrol), run as subprocesses.

They find the cluster as they always do (``/etc/slurm/slurm.conf``, or ``SLURM_CONF``). Every
call has a timeout; a tool that is missing, times out or fails raises :class:`SlurmError` with
its own words.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Mapping, Sequence

from symphony.engine import SymphonyError, redact

from .states import SACCT_FORMAT, SQUEUE_FORMAT, Seen, parse_sacct, parse_squeue

DEFAULT_TIMEOUT_S = 60.0
CONFIG_TTL_S = 300.0  # scontrol show config is read again after this long
DEFAULT_MAX_ARRAY = 1001  # SLURM's default MaxArraySize


class SlurmError(SymphonyError):
    """A SLURM command failed (its message says which and why)."""


class SlurmClient:
    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S, env: Mapping[str, str] | None = None):
        self.timeout_s = timeout_s
        self.env = dict(os.environ if env is None else env)
        self._config: dict[str, str] | None = None
        self._config_at = 0.0
        self.calls = 0  # SLURM commands run (the tracker reports its cost per poll)

    def _run(self, argv: Sequence[str], *, stdin: str | None = None, ok_errors: tuple[str, ...] = ()) -> str:
        if shutil.which(argv[0], path=self.env.get("PATH")) is None:
            raise SlurmError(f"{argv[0]} was not found on PATH: run this on a SLURM login or compute node "
                             "(or put SLURM's commands on PATH)")
        self.calls += 1
        try:
            done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=self.timeout_s,
                                  env=self.env)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{argv[0]} did not answer within {self.timeout_s:.0f}s (is slurmctld up?)") from None
        except OSError as exc:
            raise SlurmError(f"could not run {argv[0]}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            if any(text in message for text in ok_errors):
                return ""
            first = message.splitlines()[0] if message else f"exit status {done.returncode}"
            raise SlurmError(f"{argv[0]} failed: {redact(first)}")
        return done.stdout

    # --- the cluster ------------------------------------------------------------------------
    def config(self) -> dict[str, str]:
        """``scontrol show config`` as a dict (read at most every few minutes)."""
        if self._config is None or time.monotonic() - self._config_at > CONFIG_TTL_S:
            out: dict[str, str] = {}
            for line in self._run(["scontrol", "show", "config"]).splitlines():
                name, sep, value = line.partition("=")
                if sep:
                    out[name.strip()] = value.strip()
            self._config, self._config_at = out, time.monotonic()
        return self._config

    def cluster(self) -> str:
        return self.config().get("ClusterName", "") or "cluster"

    def max_array_size(self) -> int:
        try:
            return int(self.config().get("MaxArraySize", DEFAULT_MAX_ARRAY))
        except ValueError:
            return DEFAULT_MAX_ARRAY

    def has_accounting(self) -> bool:
        """True when sacct can answer (accounting storage is configured)."""
        kind = self.config().get("AccountingStorageType", "accounting_storage/none")
        return kind not in ("", "accounting_storage/none", "(null)")

    # --- jobs -------------------------------------------------------------------------------
    def sbatch(self, script: str, args: Sequence[str] = ()) -> str:
        """Submit ``script`` (given on stdin); returns the job id SLURM assigned."""
        out = self._run(["sbatch", "--parsable", *args], stdin=script).strip()
        job_id = out.splitlines()[-1].split(";")[0].strip() if out else ""
        if not job_id.isdigit():
            raise SlurmError(f"sbatch answered {redact(out)!r}, not a job id")
        return job_id

    @staticmethod
    def _job_list(ids: Sequence[str]) -> str:
        """The ``--jobs`` list for tracked ids: an array's own id stands for all its tasks (sacct
        prints the tasks that have not started only when asked for the array)."""
        return ",".join(sorted({i.split("_")[0] for i in ids}, key=lambda i: (len(i), i)))

    def squeue(self, ids: Sequence[str]) -> dict[str, Seen]:
        """Every listed job the controller still knows (one call), by tracked id."""
        if not ids:
            return {}
        text = self._run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={self._job_list(ids)}",
                          f"--Format={SQUEUE_FORMAT}"], ok_errors=("Invalid job id specified",))
        return parse_squeue(text)

    def sacct(self, ids: Sequence[str]) -> dict[str, Seen]:
        """Every listed job from SLURM's accounting (one call), by tracked id."""
        if not ids:
            return {}
        text = self._run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={self._job_list(ids)}",
                          f"--format={SACCT_FORMAT}"])
        return parse_sacct(text)

    def scancel(self, ids: Sequence[str]) -> None:
        if ids:
            self._run(["scancel", *ids], ok_errors=("Invalid job id specified", "already completing or completed"))
