"""``repair``: find what each item is missing from the outputs on disk, and enqueue exactly that.

Luigi's rule: a stage is done when its output exists. For every item, the furthest stage whose
output exists tells where it is; the next stage is enqueued unless the item is already queued
or in flight. Outputs on disk are the source of truth, so repair rebuilds every missing task
even after Redis lost all its data.

Speed: each stage's output directory is listed once (no stat per item), and the plan is made
with set operations, so a million items plan in about the time it takes to list the directories.

Safety while workers run: the items in progress (and the failed ones) are read from Redis
*before* the directories are listed. An item in progress then is left alone even if it
finishes before the plan is applied; an item not in progress then cannot finish meanwhile
unless someone enqueued it, in which case the atomic enqueue (HSETNX on the live hash) skips it.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import UnknownSession
from .session_file import SessionSpec, load_session

RETRYABLE = ("failed", "timed_out")


@dataclass(frozen=True)
class StagePlan:
    stage: str
    count: int
    reasons: Mapping[str, int]
    # the items, as an unordered set (planning needs only counts) and how to list them in the
    # session file's order when they are needed (to enqueue, or for --items)
    members: Any = field(default=(), repr=False, compare=False)
    order: Callable[[Any], tuple[str, ...]] | None = field(default=None, repr=False, compare=False)

    @property
    def items(self) -> tuple[str, ...]:
        """This stage's items, in the session file's order (worked out once, on first use)."""
        cached = self.__dict__.get("_items")
        if cached is None:
            cached = self.order(self.members) if self.order else tuple(self.members)
            object.__setattr__(self, "_items", cached)
        return cached


@dataclass(frozen=True)
class RepairPlan:
    session: str
    file: str
    total: int
    complete: int
    in_progress: int  # queued, retrying or running: left alone
    failed: int  # failed or timed out last time: reported, not retried (unless retry_failed)
    retry_failed: bool
    stages: tuple[StagePlan, ...]
    registered: bool  # False when Redis did not know the session (e.g. after a flush)
    listing_s: float
    planning_s: float
    spec: SessionSpec | None = field(default=None, repr=False, compare=False)

    @property
    def to_enqueue(self) -> int:
        return sum(s.count for s in self.stages)

    def to_dict(self, items: bool = False) -> dict[str, Any]:
        return {"session": self.session, "file": self.file, "total": self.total, "complete": self.complete,
                "in_progress": self.in_progress, "failed": self.failed, "retry_failed": self.retry_failed,
                "to_enqueue": self.to_enqueue, "registered": self.registered,
                "listing_s": round(self.listing_s, 4), "planning_s": round(self.planning_s, 4),
                "stages": [{"stage": s.stage, "count": s.count, "reasons": dict(s.reasons),
                            **({"items": list(s.items)} if items else {})} for s in self.stages]}


@dataclass(frozen=True)
class RepairResult:
    session: str
    enqueued: Mapping[str, int]
    skipped: int  # became queued or in flight between planning and enqueueing
    registration: str = ""

    @property
    def total(self) -> int:
        return sum(self.enqueued.values())


_SESSION_LINE = re.compile(r"^session:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


def find_session_file(session: str, tasks_dir: str | Path = "tasks") -> Path | None:
    """The session file in ``tasks_dir`` that defines ``session`` (read cheaply, not parsed)."""
    directory = Path(tasks_dir)
    if not directory.is_dir():
        return None
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                head = fh.read(65536)
        except OSError:
            continue
        match = _SESSION_LINE.search(head)
        if match and match.group(1) == session:
            return path
    return None


def resolve_spec(engine: Any, session: str, tasks_dir: str | Path = "tasks", file: str | Path | None = None) -> SessionSpec:
    """The session's definition from its file: the one given, the one Redis remembers, or the one
    in ``tasks_dir`` that names it (after a flush, Redis remembers nothing)."""
    candidates: list[Path] = []
    if file:
        candidates.append(Path(file))
    else:
        try:
            remembered = engine.client.hget(engine.keys.session(session), "file")
        except Exception:
            remembered = None
        if remembered and Path(remembered).is_file():
            candidates.append(Path(remembered))
        found = find_session_file(session, tasks_dir)
        if found is not None:
            candidates.append(found)
    if not candidates:
        raise UnknownSession(f"no session file for {session!r}: not registered in Redis and not found in "
                             f"{tasks_dir}/ (pass --file PATH)")
    spec = load_session(candidates[0])
    if spec.name != session:
        raise UnknownSession(f"{candidates[0]} defines session {spec.name!r}, not {session!r}")
    return spec


def list_outputs(directory: str, prefix: str, suffix: str) -> set[str]:
    """Item ids whose output file is in ``directory`` (one listing; temporary files ignored)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return set()
    start, end = len(prefix), len(suffix)
    if not prefix and not suffix:
        return set(names)
    return {name[start:len(name) - end] for name in names
            if name.startswith(prefix) and name.endswith(suffix) and len(name) > start + end}


def _listing(directory: str) -> list[str]:
    """Every name in ``directory`` (one listing); a missing directory has none."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def plan_repair(engine: Any, spec: SessionSpec, *, retry_failed: bool = False) -> RepairPlan:
    started = time.perf_counter()
    client, keys = engine.client, engine.keys
    pipeline = spec.pipeline
    for stage in pipeline.stages:
        if stage.output is None:
            from .errors import ConfigError

            raise ConfigError(f"stage {stage.name} of pipeline {pipeline.name} has no output: repair needs every "
                              "stage to write one (Luigi's rule)")
    # 1. what is in progress and what failed, read BEFORE looking at the disk (see module doc)
    with client.pipeline(transaction=False) as pipe:
        pipe.exists(keys.session(spec.name))
        pipe.hkeys(keys.live(spec.name))
        pipe.hgetall(keys.outcomes(spec.name))
        registered, live_items, outcomes = pipe.execute()
    failed_items = []
    for item, raw in outcomes.items():
        try:
            state = json.loads(raw).get("state")
        except (ValueError, AttributeError):
            continue
        if state in RETRYABLE:
            failed_items.append(item)
    # 2. which items have each stage's output: one listing per stage directory. Items are
    #    handled by a key: the name of their output file when every stage names its outputs
    #    alike (the usual "{item}.json"), so no listed name is parsed; else the id, with each
    #    listing parsed. Each listing is intersected with the set of keys right away (a C-level
    #    pass: one hash lookup per listed file, nothing per item and stage), and the stages'
    #    directories are read in parallel threads (the listing syscalls release the GIL; on a
    #    network file system most of the time is waiting).
    ids = [item.id for item in spec.items]
    patterns = [stage.output_dir_and_pattern(spec.root, spec.name) for stage in pipeline.stages]
    shapes = {pattern[1:] for pattern in patterns}
    uniform = len(shapes) == 1
    prefix, suffix = next(iter(shapes)) if uniform else ("", "")
    affixed = uniform and bool(prefix or suffix)
    if not affixed:
        known = set(ids)
    elif prefix:
        known = {prefix + i + suffix for i in ids}
    else:
        known = {i + suffix for i in ids}
    if len(known) != len(ids):  # duplicated ids in the file: each once, first place kept
        ids = list(dict.fromkeys(ids))

    listed = time.perf_counter()
    listings = [_listing(directory) for directory, _, _ in patterns]
    listing_s = time.perf_counter() - listed
    if not uniform:
        parsed = []
        for (_, pre, suf), names in zip(patterns, listings):
            start, end = len(pre), len(suf)
            parsed.append([n[start:len(n) - end] for n in names
                           if n.startswith(pre) and n.endswith(suf) and len(n) > start + end])
        listings = parsed
    key_of = (lambda i: prefix + i + suffix) if affixed else None
    live = ({key_of(i) for i in live_items} if key_of else set(live_items)) & known
    failed = ({key_of(i) for i in failed_items} if key_of else set(failed_items)) & known
    total = len(known)
    # 3. the furthest stage done, for every item: from the last stage back, the items not placed
    #    yet that have this stage's output are taken out (one hash lookup per listed file); what
    #    is left at the end has no output at all
    last = len(pipeline.stages) - 1
    rest = known  # consumed in place: no copy of a million keys
    hits: list[set[str]] = [set() for _ in pipeline.stages]
    for k in range(last, -1, -1):
        if not rest:
            break
        hits[k] = rest.intersection(listings[k])
        rest -= hits[k]
    complete = hits[last]
    targets = [rest] + hits[:last]  # the stage each item needs next
    held_back = set() if retry_failed else failed - live
    stages = []
    for k, stage in enumerate(pipeline.stages):
        wanted = targets[k] - live - held_back if (live or held_back) else targets[k]
        retrying = len(wanted & failed) if retry_failed and failed else 0
        reasons: dict[str, int] = {}
        fresh = len(wanted) - retrying
        if fresh:
            reasons["nothing done yet" if k == 0 else f"{pipeline.stages[k - 1].name} done, {stage.name} missing"] = fresh
        if retrying:
            reasons["failed before (--retry-failed)"] = retrying
        stages.append(StagePlan(stage.name, len(wanted), reasons, wanted,
                                _in_file_order(ids, prefix if affixed else "", suffix if affixed else "")))
    return RepairPlan(session=spec.name, file=spec.file, total=total, complete=len(complete),
                      in_progress=len(live - complete), failed=len(failed - complete - live),
                      retry_failed=retry_failed, stages=tuple(stages), registered=bool(registered),
                      listing_s=listing_s, planning_s=time.perf_counter() - started, spec=spec)


def _in_file_order(ids: list[str], prefix: str, suffix: str) -> Callable[[Any], tuple[str, ...]]:
    """Lists a stage's items (a set of keys) in the session file's order, when it is asked to."""
    if not (prefix or suffix):
        return lambda members: tuple(i for i in ids if i in members)
    return lambda members: tuple(i for i in ids if prefix + i + suffix in members)


def apply_repair(engine: Any, plan: RepairPlan, *, resume: bool = False,
                 progress: Callable[[int], None] | None = None) -> RepairResult:
    """Register the session if Redis forgot it, then enqueue the plan (atomically deduplicated)."""
    spec = plan.spec
    registration = engine.register_session(spec.record(), items=len(spec.items), resume=resume)
    metas: Mapping[str, Any] = {item.id: item.message_meta() for item in spec.items} if plan.to_enqueue else {}
    enqueued: dict[str, int] = {}
    skipped = 0
    for stage in plan.stages:
        if not stage.count:
            continue
        result = engine.enqueue(spec.name, stage.stage, ((i, metas.get(i)) for i in stage.items), progress=progress)
        enqueued[stage.stage] = result.added
        skipped += result.skipped
    if plan.to_enqueue:
        from .registry import add_event

        add_event(engine.client, engine.keys, "repair",
                  f"repair of {spec.name}: {sum(enqueued.values())} task(s) enqueued "
                  + ", ".join(f"{k} {v}" for k, v in enqueued.items()), session=spec.name)
    return RepairResult(spec.name, enqueued, skipped, registration)
