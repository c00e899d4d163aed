"""Profile Symphony's workers at full speed: py-spy on every process of the tree, or strace -c.

    python -m bench.profile                          # py-spy, 1 stage, 1 worker process, 5 s
    python -m bench.profile --isolation inline --processes 2 --seconds 8
    python -m bench.profile --prefetch 1             # one task per claim
    python -m bench.profile --strace                 # system calls per task (strace -c -f)

Same set-up as the throughput case (``bench.throughput``): an empty Redis this tool starts, a
pre-filled queue of no-op tasks (``bench.noop.bump``), ``symphony-worker`` started as users start
it. Once a tenth of the tasks are done the profiler attaches to the worker processes and their
executors for ``--seconds``; the report is per kind of process (worker, executor): the
functions with the most samples, inclusive and on top of the stack, as shares of that kind's
samples, and the tasks completed meanwhile (to read the figures per task). ``--raw DIR`` keeps
py-spy's collapsed stacks (one file per process) for a flame graph.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Group, Server, bench_env, temp_dir, remove_temp_dirs, wait_for
from .noop import COUNTER
from .systems import symphony_base_commands, symphony_commands, write_session


def _tree(group: Group) -> dict[str, list[int]]:
    """The worker processes and their executors, by kind."""
    kinds: dict[str, list[int]] = {"worker": [], "executor": []}
    for proc in group.tree():
        try:
            cmd = " ".join(proc.cmdline())
        except Exception:  # noqa: BLE001 - it ended
            continue
        if "executor_main" in cmd:
            kinds["executor"].append(proc.pid)
        elif proc.pid not in [p.pid for p in group.procs]:  # the supervisor's children
            kinds["worker"].append(proc.pid)
    return kinds


def _usage(kinds: dict[str, list[int]]) -> dict[str, tuple[float, int, int, float]]:
    """CPU seconds, context switches of the main thread (voluntary, involuntary) and system CPU
    seconds of each kind's processes (CPU: all threads)."""
    import psutil

    out = {}
    for kind, pids in kinds.items():
        cpu = system = vol = invol = 0
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                t, c = proc.cpu_times(), proc.num_ctx_switches()
            except psutil.Error:
                continue
            cpu += t.user + t.system
            system += t.system
            vol += c.voluntary
            invol += c.involuntary
        out[kind] = (cpu, vol, invol, system)
    return out


def _summarize(files: list[Path], top: int) -> list[str]:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                      if " (" in f else f for f in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
    if not total:
        return ["  (no samples)"]
    out = [f"  {total} samples; inclusive:"]
    out += [f"    {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    out.append("  on top of the stack:")
    out += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", type=int, default=1)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default %(default)s)")
    p.add_argument("--isolation", choices=("executor", "inline"), default="executor")
    p.add_argument("--prefetch", type=int, default=None)
    p.add_argument("--strace", action="store_true", help="count system calls (strace -c -f) instead")
    p.add_argument("--cpu", action="store_true", help="only CPU time and context switches per task, by kind of "
                                                     "process (no profiler attached)")
    p.add_argument("--base", action="store_true", help="profile the workers of $BENCH_BASELINE (another checkout)")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--raw", metavar="DIR", help="keep py-spy's collapsed stacks in DIR")
    args = p.parse_args(argv)
    tool = "strace" if args.strace else "py-spy"
    exe = shutil.which(tool) or str(Path(sys.executable).with_name(tool))
    if not os.path.exists(exe):
        p.error(f"{tool} is not installed")
    server = Server()
    try:
        workdir = temp_dir("symphony-profile-")
        from symphony.engine import Engine, initialize_session, load_session

        items = max(1, args.items // args.stages)
        spec = load_session(write_session(workdir, "bench", items, args.stages,
                                          isolation="inline" if args.isolation == "inline" else None))
        with Engine.from_url(server.url) as engine:
            initialize_session(engine, spec)
        cmd = (symphony_base_commands if args.base else symphony_commands)(server.url, args.processes, args.stages,
                                                                            5.0)[0]
        if args.prefetch is not None:
            cmd += ["--prefetch", str(args.prefetch)]
        group = Group([cmd], bench_env(server.url), workdir)
        count = lambda: int(server.client.get(COUNTER) or 0)  # noqa: E731
        try:
            wait_for(lambda: count() >= items * args.stages // 10 or not group.alive(), 60, what="the warm-up")
            kinds = _tree(group)
            raw = Path(args.raw) if args.raw else Path(tempfile.mkdtemp(prefix="symphony-profile-"))
            raw.mkdir(parents=True, exist_ok=True)
            c1, t1 = count(), time.perf_counter()
            tracers = []
            if args.cpu:
                before = _usage(kinds)
                time.sleep(args.seconds)
                after, done, took = _usage(kinds), count() - c1, time.perf_counter() - t1
                print(f"{done} tasks in {took:.1f}s ({done / took:.0f}/s); per task:")
                for kind in kinds:
                    cpu, vol, invol, system = (after[kind][i] - before[kind][i] for i in range(4))
                    print(f"  {kind:9} cpu {cpu / done * 1e6:6.1f} us ({system / done * 1e6:5.1f} in the kernel)   "
                          f"context switches {vol / done:5.2f} voluntary, {invol / done:5.2f} involuntary")
                return 0
            for kind, pids in kinds.items():
                for pid in pids:
                    out = raw / f"{kind}-{pid}.txt"
                    if args.strace:
                        argv_ = [exe, "-c", "-f", "-p", str(pid), "-o", str(out)]
                    else:
                        argv_ = [exe, "record", "-p", str(pid), "-r", str(args.rate), "-d", str(max(1, round(args.seconds))),
                                 "-f", "raw", "-o", str(out), "--nonblocking"]
                    tracers.append((kind, out, subprocess.Popen(argv_, stdout=subprocess.DEVNULL,
                                                                stderr=subprocess.DEVNULL)))
            if args.strace:
                time.sleep(args.seconds)
                for _, _, t in tracers:
                    t.terminate()
            for _, _, t in tracers:
                t.wait(timeout=args.seconds + 60)
            done = count() - c1
            took = time.perf_counter() - t1
        finally:
            group.stop()
        print(f"{done} tasks in {took:.1f}s ({done / took:.0f}/s) while profiling; processes {kinds}")
        for kind in kinds:
            files = [out for k, out, _ in tracers if k == kind and out.exists()]
            print(f"{kind}:")
            if args.strace:
                for path in files:
                    print(path.read_text())
            else:
                print("\n".join(_summarize(files, args.top)))
        if not args.raw:
            shutil.rmtree(raw, ignore_errors=True)
    finally:
        server.close()
        remove_temp_dirs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
