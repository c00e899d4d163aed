"""A heartbeat's sample of the worker process and its host: the handler children's memory is
counted from the process's own tree, without reading every process of the host (psutil's
``children()`` does: a beat cost O(processes on the host), the host O(N^2))."""
from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from symphony.workers import hostinfo
from tests.helpers import wait_until

GRANDCHILD = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
              "'import time; x = bytearray(60_000_000); x[::4096] = b\"1\" * len(x[::4096]); time.sleep(60)']).wait()")


@pytest.mark.skipif(not hostinfo._PROC_CHILDREN, reason="needs Linux's /proc/<pid>/task/<tid>/children")
def test_the_sample_counts_handler_grandchildren_without_walking_every_process(monkeypatch):
    sampler = hostinfo.HostSampler()
    alone = sampler.sample()["rss"]
    child = subprocess.Popen([sys.executable, "-c", GRANDCHILD])
    try:
        # (other tests may have left children of this process: look at this child's branch only)
        grandchildren = wait_until(lambda: hostinfo._children_of(child.pid), timeout=20, message="the grandchild")
        assert child.pid in sampler._tree() and set(grandchildren) <= set(sampler._tree())

        def walk(*_args, **_kwargs):
            raise AssertionError("psutil walked every process of the host")

        monkeypatch.setattr(psutil.Process, "children", walk)
        sample = wait_until(lambda: (s := sampler.sample()) and s["rss"] > alone + 50_000_000 and s,
                            timeout=20, message="the grandchild's 60 MB in the worker's rss")
        assert {"cpu", "mem", "rss", "host_cpu", "host_mem", "cpus"} <= set(sample)
    finally:
        for pid in hostinfo._children_of(child.pid):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        child.wait(timeout=10)
