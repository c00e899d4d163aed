"""Case 5: repair planning for a large session on disk, against listing its directories once.

Generates N items x 4 stages of outputs (empty files) under a temporary root: item n has the
outputs of its first ``n % 5`` stages, so every kind of repair occurs (nothing done, stopped
after each stage, complete). Then, alternately, lists the four output directories once
(``os.listdir``, the floor: repair must at least look) and runs ``Engine.plan_repair``: load
the session file, then plan (read what Redis holds in progress, list each directory once,
decide per item). The target compares the plan (``RepairPlan.planning_s``) with the listing;
the end-to-end time (with loading the session file, the same load as ``initialize``) and
the listing with one set per directory are reported beside it. The tree is made once per
harness run and removed at the end.
"""
from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from .common import Server, temp_dir

STAGES = ("r1", "r2", "r3", "r4")


class Tree:
    def __init__(self, items: int):
        self.items = items
        self.base = Path(temp_dir("symphony-bench-repair-"))
        self.root = self.base / "data"
        self.session = "bench-repair"
        self.file = self._write_files()
        t = time.perf_counter()
        self.files = self._make_outputs()
        self.make_s = time.perf_counter() - t
        # measure with the tree on disk, not while the kernel may still be writing it back on one
        # of the two cores (how long that took is reported as sync_s)
        t = time.perf_counter()
        os.sync()
        self.sync_s = time.perf_counter() - t

    def _write_files(self) -> Path:
        (self.base / "pipelines").mkdir(parents=True)
        pipeline = {"pipeline": "repairbench", "stages": [
            {"name": s, "pool": "bench", "handler": "bench.noop:symphony_task",
             "output": "{root}/{session}/{stage}/{item}.json"} for s in STAGES]}
        (self.base / "pipelines" / "repairbench.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
        session = {"session": self.session, "pipeline": "pipelines/repairbench.yaml", "root": "data",
                   "items_from": {"range": {"prefix": "i", "start": 0, "count": self.items, "width": 7}}}
        path = self.base / f"{self.session}.yaml"
        path.write_text(yaml.safe_dump(session, sort_keys=False))
        return path

    def directories(self) -> list[str]:
        return [str(self.root / self.session / s) for s in STAGES]

    def _make_outputs(self) -> int:
        made = 0
        for k, directory in enumerate(self.directories()):
            os.makedirs(directory)
            fd = os.open(directory, os.O_RDONLY)
            try:
                for n in range(self.items):
                    if n % 5 > k:
                        os.mknod(f"i{n:07d}.json", dir_fd=fd)
                        made += 1
            finally:
                os.close(fd)
        return made

    def expected(self) -> dict[str, int]:
        """Items the plan must enqueue per stage (the first missing stage of each item)."""
        per = {s: 0 for s in STAGES}
        for n in range(self.items):
            done = n % 5
            if done < len(STAGES):
                per[STAGES[done]] += 1
        return per

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def list_once(tree: Tree) -> float:
    t = time.perf_counter()
    total = 0
    for directory in tree.directories():
        total += len(os.listdir(directory))
    elapsed = time.perf_counter() - t
    if total != tree.files:
        raise RuntimeError(f"listed {total} files, made {tree.files}")
    return elapsed


def list_into_sets(tree: Tree) -> float:
    """Listing plus one set per directory: what any membership lookup on the listing costs."""
    t = time.perf_counter()
    sets = [set(os.listdir(directory)) for directory in tree.directories()]
    elapsed = time.perf_counter() - t
    if sum(map(len, sets)) != tree.files:
        raise RuntimeError("listing changed")
    return elapsed


def plan_once(server: Server, tree: Tree) -> tuple[float, Any]:
    from symphony.engine import Engine

    with Engine.from_url(server.url) as engine:
        t = time.perf_counter()
        plan = engine.plan_repair(tree.session, file=str(tree.file))
        elapsed = time.perf_counter() - t
    got = {s.stage: s.count for s in plan.stages}
    if got != tree.expected():
        raise RuntimeError(f"repair plan {got} differs from the tree {tree.expected()}")
    return elapsed, plan


def run(server: Server, tree: Tree, *, reps: int) -> dict[str, Any]:
    server.reset()
    list_once(tree)  # warm the directory cache: both sides then read from memory
    lists, sets, plans, listing_inside, planning_inside = [], [], [], [], []
    for _ in range(reps):
        lists.append(list_once(tree))
        sets.append(list_into_sets(tree))
        elapsed, plan = plan_once(server, tree)
        plans.append(elapsed)
        listing_inside.append(plan.listing_s)
        planning_inside.append(plan.planning_s)
        del plan  # one plan in memory at a time, as in `symphony repair`
    listing = statistics.median(lists)
    planning = statistics.median(planning_inside)
    end_to_end = statistics.median(plans)
    return {"items": tree.items, "stages": len(STAGES), "files": tree.files, "make_s": round(tree.make_s, 1),
            "sync_s": round(tree.sync_s, 1),
            "list_s": round(listing, 3), "list_into_sets_s": round(statistics.median(sets), 3),
            "planning_s": round(planning, 3), "ratio": round(planning / listing, 2),
            "plan_listing_s": round(statistics.median(listing_inside), 3),
            "end_to_end_s": round(end_to_end, 3), "load_s": round(end_to_end - planning, 3),
            "ratio_end_to_end": round(end_to_end / listing, 2), "to_enqueue": sum(tree.expected().values()),
            "rounds": [{"list_s": round(a, 3), "planning_s": round(b, 3), "end_to_end_s": round(c, 3)}
                       for a, b, c in zip(lists, planning_inside, plans)]}
