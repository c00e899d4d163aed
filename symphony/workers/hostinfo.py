"""CPU and memory of this worker process and of its host, from psutil, for the heartbeat (and the
SLURM job it runs in, if any: ``batchjob.py``)."""
from __future__ import annotations

import os
import socket
import time

import psutil

from .batchjob import BatchJob


class HostSampler:
    def __init__(self) -> None:
        self.process = psutil.Process(os.getpid())
        # SYMPHONY_HOSTNAME: the host name to report (and drain by) where the system's is not the
        # one operators use (a container's random name, several workers sharing one machine)
        self.host = os.environ.get("SYMPHONY_HOSTNAME") or socket.gethostname()
        # the first cpu_percent() call always returns 0.0: prime both counters now
        self.process.cpu_percent(None)
        psutil.cpu_percent(None)
        self.cpus = psutil.cpu_count() or 1
        self.started = time.time()
        # handler children (command handlers) by pid: psutil measures a process's CPU between two
        # calls on the same object, so each child's object is kept for as long as it lives
        self._children: dict[int, psutil.Process] = {}
        self.job = BatchJob.from_env().heartbeat_fields()  # SLURM job and array ids, the job's end

    def _children_usage(self) -> tuple[float, float, int]:
        """CPU percent (of one core), memory percent and RSS of the handler children."""
        cpu = mem = 0.0
        rss = 0
        alive: dict[int, psutil.Process] = {}
        for child in self.process.children(recursive=True):
            known = self._children.get(child.pid)
            if known is not None and known.is_running():
                child = known
            try:
                with child.oneshot():
                    cpu += child.cpu_percent(None)  # 0.0 on the first call for a new child
                    rss += child.memory_info().rss
                    mem += child.memory_percent()
            except psutil.Error:
                continue
            alive[child.pid] = child
        self._children = alive
        return cpu, mem, rss

    def sample(self) -> dict[str, object]:
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_percent(None)
                mem = self.process.memory_percent()
                rss = self.process.memory_info().rss
            # include child processes (command handlers) in the worker's own figures
            child_cpu, child_mem, child_rss = self._children_usage()
            host_cpu = psutil.cpu_percent(None)
            vm = psutil.virtual_memory()
        except psutil.Error:
            return dict(self.job)
        return {**self.job, "cpu": round(min(100.0, (cpu + child_cpu) / self.cpus), 1), "mem": round(mem + child_mem, 2),
                "rss": rss + child_rss, "host_cpu": round(host_cpu, 1), "host_mem": round(vm.percent, 1),
                "cpus": self.cpus}
