"""CPU and memory of this worker process and of its host, from psutil, for the heartbeat (and the
SLURM job it runs in, if any: ``batchjob.py``)."""
from __future__ import annotations

import os
import socket
import time

import psutil

from .batchjob import BatchJob


MAX_TREE = 256  # descendants measured at most (a handler that forks a storm is still counted in part)
_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (of each of its threads), from /proc; [] once it is gone."""
    out: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


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

    def _tree(self) -> list[int]:
        """The pids of this process's descendants (its handler executor, its commands and theirs).

        On Linux from each process's own ``/proc/<pid>/task/<tid>/children`` lists: the cost is
        the size of this process's tree, not of the host (psutil's ``children()`` reads every
        process's status under /proc to find the parents: on a host of N worker processes each
        beat cost O(N), the host O(N^2)). Elsewhere (no such lists: Windows, macOS) psutil's."""
        if not _PROC_CHILDREN:
            return [child.pid for child in self.process.children(recursive=True)]
        found: list[int] = []
        todo = [self.process.pid]
        while todo and len(found) < MAX_TREE:
            pid = todo.pop()
            for child in _children_of(pid):
                if child not in found:
                    found.append(child)
                    todo.append(child)
        return found

    def _children_usage(self) -> tuple[float, int]:
        """CPU percent (of one core) and RSS of the handler children."""
        cpu = 0.0
        rss = 0
        alive: dict[int, psutil.Process] = {}
        for pid in self._tree():
            known = self._children.get(pid)
            if known is not None and known.is_running():
                child = known
            else:
                try:
                    child = psutil.Process(pid)
                except psutil.Error:
                    continue
            try:
                with child.oneshot():
                    cpu += child.cpu_percent(None)  # 0.0 on the first call for a new child
                    rss += child.memory_info().rss
            except psutil.Error:
                continue
            alive[child.pid] = child
        self._children = alive
        return cpu, rss

    def sample(self) -> dict[str, object]:
        """The heartbeat's figures: this process with its handler children (cpu of all cores,
        mem as a share of the host's memory, rss), and the host's (host_cpu, host_mem, cpus).
        Reads this process's tree and two host-wide files (/proc/stat, /proc/meminfo), never
        every process of the host."""
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_percent(None)
                rss = self.process.memory_info().rss
            # include child processes (command handlers) in the worker's own figures
            child_cpu, child_rss = self._children_usage()
            host_cpu = psutil.cpu_percent(None)
            vm = psutil.virtual_memory()
        except psutil.Error:
            return dict(self.job)
        mem = (rss + child_rss) / vm.total * 100 if vm.total else 0.0  # psutil's memory_percent(), once
        return {**self.job, "cpu": round(min(100.0, (cpu + child_cpu) / self.cpus), 1), "mem": round(mem, 2),
                "rss": rss + child_rss, "host_cpu": round(host_cpu, 1), "host_mem": round(vm.percent, 1),
                "cpus": self.cpus}
