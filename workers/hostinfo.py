"""CPU and memory of this worker process and of its host, from psutil, for the heartbeat."""
from __future__ import annotations

import os
import socket
import time

import psutil


class HostSampler:
    def __init__(self) -> None:
        self.process = psutil.Process(os.getpid())
        self.host = socket.gethostname()
        # the first cpu_percent() call always returns 0.0: prime both counters now
        self.process.cpu_percent(None)
        psutil.cpu_percent(None)
        self.cpus = psutil.cpu_count() or 1
        self.started = time.time()

    def sample(self) -> dict[str, object]:
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_percent(None)
                mem = self.process.memory_percent()
                rss = self.process.memory_info().rss
            # include child processes (command handlers) in the worker's own figures
            for child in self.process.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                    mem += child.memory_percent()
                except psutil.Error:
                    continue
            host_cpu = psutil.cpu_percent(None)
            vm = psutil.virtual_memory()
        except psutil.Error:
            return {}
        return {"cpu": round(cpu / self.cpus, 1), "mem": round(mem, 2), "rss": rss,
                "host_cpu": round(host_cpu, 1), "host_mem": round(vm.percent, 1), "cpus": self.cpus}
