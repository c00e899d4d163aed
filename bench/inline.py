"""Case ``inline``: ``symphony initialize`` of a session file whose items are written inline,
one per line, as operators write them (``- {id: row-0000001, vines: 38}``), with ``require: [vines]``.

Each size runs the real command in its own process, twice: ``initialize --dry-run`` (load and
verify only) and ``initialize`` (load, verify, register, enqueue), so the figures show where the
time goes. Wall time includes the interpreter's start; peak RSS is the process's own
(``wait4``), so neither this harness nor Redis is counted. The queue is checked afterwards.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .common import ROOT, Server, bench_env, temp_dir
from .systems import STAGE_NAMES


def write_inline_session(workdir: str, name: str, items: int, stages: int = 4) -> Path:
    base = Path(workdir)
    (base / "pipelines").mkdir(parents=True, exist_ok=True)
    pipeline = {"pipeline": f"bench{stages}", "defaults": {"timeout": 60, "max_attempts": 3},
                "stages": [{"name": STAGE_NAMES[i], "pool": "bench", "handler": "bench.noop:symphony_task"}
                           for i in range(stages)]}
    (base / "pipelines" / f"bench{stages}.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    rng = random.Random(7)
    path = base / f"{name}.yaml"
    with path.open("w") as fh:
        fh.write(f"session: {name}\npipeline: pipelines/bench{stages}.yaml\nroot: data\nrequire: [vines]\nitems:\n")
        for n in range(1, items + 1):
            fh.write(f"  - {{id: row-{n:07d}, vines: {rng.randint(28, 46)}}}\n")
    return path


def _run(argv: list[str], env: dict[str, str], workdir: str) -> tuple[float, int, str, str]:
    """(wall seconds, peak RSS in bytes, stdout, stderr) of one command, reaped with ``wait4`` to
    read its own resource usage."""
    out_path, err_path = Path(workdir) / "out.txt", Path(workdir) / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    stdout, stderr = out_path.read_text(), err_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-3:])} exited {proc.returncode}: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, stdout, stderr


def run_one(server: Server, *, items: int) -> dict[str, Any]:
    server.reset()
    workdir = temp_dir("symphony-bench-inline-")
    path = write_inline_session(workdir, f"inline-{items}", items)
    env = bench_env(server.url)
    command = [sys.executable, "-m", "symphony.console.commands", "initialize", "--json", str(path)]
    dry_s, dry_rss, _, _ = _run(command + ["--dry-run"], env, workdir)
    total_s, rss, out, _ = _run(command, env, workdir)
    sent = json.loads(out)["sent"]
    queued = server.client.llen(K.queue("b1", f"inline-{items}"))
    if sent[0]["added"] != items or queued != items:
        raise RuntimeError(f"initialize enqueued {sent[0]['added']} (queue holds {queued}), expected {items}")
    return {"items": items, "file_mb": round(path.stat().st_size / 2**20, 1),
            "verify_s": round(dry_s, 3), "verify_rate": round(items / dry_s), "verify_peak_rss_mb": round(dry_rss / 2**20, 1),
            "total_s": round(total_s, 3), "rate": round(items / total_s), "peak_rss_mb": round(rss / 2**20, 1),
            "enqueue_s": round(total_s - dry_s, 3)}
