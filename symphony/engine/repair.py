"""``repair``: find what each item is missing from the outputs on disk, and enqueue exactly that.

Luigi's rule: a stage is done when its output exists. For every item, the furthest stage whose
output exists tells where it is; the next stage is enqueued unless the item is already queued
or in flight. Outputs on disk are the source of truth, so repair rebuilds every missing task
even after Redis lost all its data.

Speed: each stage's output directory is listed once (no stat per item), and the plan is counted
with C-level set passes (one hash operation per listed name and one per item), so a million
items plan in under twice the time it takes to list the directories; which items those are, in
the file's order, is worked out only when they are enqueued or shown.

Safety while workers run: the items in progress (and the failed ones) are read from Redis
*before* the directories are listed. An item in progress then is left alone even if it
finishes before the plan is applied; an item not in progress then cannot finish meanwhile
unless someone enqueued it, in which case the atomic enqueue (HSETNX on the live hash) skips it.

Counts: applying a plan also restores each stage's done bitmap from the same listings
(:mod:`engine.progress`), before anything is enqueued: an item whose output is on disk is done
there, one whose output is gone is not, and the items in progress keep the bits Redis has (their
workers may be setting them now). So progress is right again after Redis lost its data, and an
item rerun because its output was deleted is not counted twice.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, repeat
from operator import add
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from symphony.spec import Pipeline, SessionSpec, load_session

from .errors import ConfigError, UnknownSession
from .outcomes import RETRYABLE, InvalidRecord, OutcomeRecord
from .progress import item_ordinals, restore_done
from .registry import add_event
from .stores import open_store


@dataclass(frozen=True)
class StagePlan:
    stage: str
    count: int
    reasons: Mapping[str, int]
    # how to list the items, in the session file's order, when they are needed (to enqueue, or
    # for --items): planning itself needs only the counts
    order: Callable[[], tuple[str, ...]] | None = field(default=None, repr=False, compare=False)

    @property
    def items(self) -> tuple[str, ...]:
        """This stage's items, in the session file's order (worked out once, on first use)."""
        cached = self.__dict__.get("_items")
        if cached is None:
            cached = self.order() if self.order else ()
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
    evidence: "_Evidence | None" = field(default=None, repr=False, compare=False)  # what applying restores counts from

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
    done: Mapping[str, int] = field(default_factory=dict)  # each stage's items done, recounted from disk

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


def _listing(directory: str) -> list[str]:
    """Every name in ``directory`` (one listing: ``os.listdir`` on a local path, one paged prefix
    listing in an object store); a missing directory has none."""
    return open_store(directory).list_prefix(directory)


class _Disk:
    """What the stages' directories hold, and where each item stands by it.

    Items are handled by a key: the name of their output file when every stage names its
    outputs alike (the usual "{item}.json"), so no listed name is parsed; else the id. An item's
    *next stage* is the one after the furthest stage whose output is listed (0: none listed;
    the number of stages: complete).
    """

    def __init__(self, ids: list[str], prefix: str, suffix: str, listings: list[list[str]]):
        self.ids, self.prefix, self.suffix, self.listings = ids, prefix, suffix, listings
        self._next: list[int] | None = None

    def keys(self) -> Iterator[str]:
        """Every item's key, in the file's order, made by C-level passes."""
        keys: Iterator[str] = iter(self.ids)
        if self.prefix:
            keys = map(add, repeat(self.prefix), keys)
        if self.suffix:
            keys = map(add, keys, repeat(self.suffix))
        return keys

    def key(self, item: str) -> str:
        return self.prefix + item + self.suffix

    def present(self, stage: int) -> Iterator[bool]:
        """Per item, in the file's order: is ``stage``'s output listed?"""
        return map(set(self.listings[stage]).__contains__, self.keys())

    def next_stage(self, keys: set[str]) -> dict[str, int]:
        """The next stage of a few keys (strays, items in progress or failed): one lookup per
        listed name in that small set."""
        where = dict.fromkeys(keys, 0)
        if keys:
            for k, names in enumerate(self.listings):
                where.update(dict.fromkeys(keys.intersection(names), k + 1))
        return where

    def items_at(self, stage: int, excluded: frozenset[str]) -> tuple[str, ...]:
        """The items whose next stage is ``stage``, in the file's order, but ``excluded`` (keys)."""
        if self._next is None:  # every item's next stage, worked out once, when items are needed
            where: dict[str, int] = {}
            for k, names in enumerate(self.listings):
                where.update(zip(names, repeat(k + 1)))
            self._next = list(map(where.get, self.keys(), repeat(0)))
        chosen = compress(self.ids, map(stage.__eq__, self._next))
        if excluded:
            return tuple(i for i in chosen if self.key(i) not in excluded)
        return tuple(chosen)


@dataclass(frozen=True)
class _Evidence:
    """What a plan saw, for applying it: the listings, the items then in progress, the ordinals."""

    disk: _Disk
    live: frozenset[str]  # keys of the items in progress
    ordinals: Any  # Sequence[int], the ordinal of each of disk.ids
    size: int  # bits per bitmap: the session's items


@dataclass(frozen=True)
class _Held:
    """Items repair does not enqueue, by key, and the next stage of each."""

    live: set[str]  # queued, retrying or running
    failed_only: set[str]  # failed or timed out last time, not queued again since
    where: dict[str, int]  # next stage of every key above


def _require_outputs(pipeline: Pipeline) -> None:
    for stage in pipeline.stages:
        if stage.output is None:
            raise ConfigError(f"stage {stage.name} of pipeline {pipeline.name} has no output: repair needs every "
                              "stage to write one (Luigi's rule)")


def _read_progress(engine: Any, session: str) -> tuple[bool, list[str], list[str]]:
    """Step 1: whether Redis knows the session, the items in progress and the failed ones (read
    BEFORE looking at the disk, see the module doc)."""
    with engine.client.pipeline(transaction=False) as pipe:
        pipe.exists(engine.keys.session(session))
        pipe.hkeys(engine.keys.live(session))
        pipe.hgetall(engine.keys.outcomes(session))
        registered, live_items, outcomes = pipe.execute()
    failed_items = []
    for item, raw in outcomes.items():
        try:
            if OutcomeRecord.decode(item, raw).state in RETRYABLE:
                failed_items.append(item)
        except InvalidRecord:
            continue
    return bool(registered), live_items, failed_items


def _list_outputs(spec: SessionSpec, ids: list[str]) -> tuple[_Disk, float]:
    """Step 2: one listing per stage directory (parsed back to ids only when the stages name
    their outputs differently). Returns the disk and how long listing took."""
    patterns = [stage.output_dir_and_pattern(spec.root, spec.name) for stage in spec.pipeline.stages]
    shapes = {pattern[1:] for pattern in patterns}
    prefix, suffix = next(iter(shapes)) if len(shapes) == 1 else ("", "")
    listed = time.perf_counter()
    listings = [_listing(directory) for directory, _, _ in patterns]
    listing_s = time.perf_counter() - listed
    if len(shapes) > 1:
        parsed = []
        for (_, pre, suf), names in zip(patterns, listings):
            start, end = len(pre), len(suf)
            parsed.append([n[start:len(n) - end] for n in names
                           if n.startswith(pre) and n.endswith(suf) and len(n) > start + end])
        listings = parsed
    return _Disk(ids, prefix, suffix, listings), listing_s


def _count_next_stages(disk: _Disk, items: int, last: int) -> list[int]:
    """Step 3: how many items have each next stage (``at[j]``; ``at[last]``: complete).

    Every listed key goes into one set, from the last stage back, counted at the stage where it
    is first seen (its furthest); then every item's key is taken out of that set. Each step is
    one C-level pass: one hash lookup per listed name and one per item, nothing per item and
    stage. What is left was listed but is no item's (a temporary file, an item since removed
    from the file): not counted."""
    at = [0] * (last + 1)
    seen: set[str] = set()
    for k in range(last - 1, -1, -1):
        before = len(seen)
        seen.update(disk.listings[k])
        at[k + 1] = len(seen) - before
    before = len(seen)
    seen.difference_update(disk.keys())
    at[0] = items - (before - len(seen))
    for j in disk.next_stage(seen).values():
        at[j] -= 1
    return at


def _held_back(disk: _Disk, live_items: list[str], failed_items: list[str]) -> _Held:
    """Step 4: the items in progress and the failed ones that are items of this file, by key."""
    live = {disk.key(i) for i in live_items}
    failed = {disk.key(i) for i in failed_items}
    if live or failed:
        outside = live | failed
        outside.difference_update(disk.keys())  # not items of this file: ignored
        live -= outside
        failed -= outside
    return _Held(live, failed - live, disk.next_stage(live | failed))


def _stage_plans(pipeline: Pipeline, disk: _Disk, at: list[int], held: _Held,
                 retry_failed: bool) -> tuple[StagePlan, ...]:
    """Step 5: per stage, what to enqueue and why: items in progress are left alone, failed ones
    are held back unless ``retry_failed``."""
    left_alone = held.live if retry_failed else held.live | held.failed_only
    where = held.where
    stages = []
    for k, stage in enumerate(pipeline.stages):
        excluded = frozenset(key for key in left_alone if where[key] == k)
        count = at[k] - len(excluded)
        retrying = sum(1 for key in held.failed_only if where[key] == k) if retry_failed else 0
        reasons: dict[str, int] = {}
        fresh = count - retrying
        if fresh:
            reasons["nothing done yet" if k == 0 else f"{pipeline.stages[k - 1].name} done, {stage.name} missing"] = fresh
        if retrying:
            reasons["failed before (--retry-failed)"] = retrying
        stages.append(StagePlan(stage.name, count, reasons, partial(disk.items_at, k, excluded)))
    return tuple(stages)


def plan_repair(engine: Any, spec: SessionSpec, *, retry_failed: bool = False) -> RepairPlan:
    """What repair would enqueue for ``spec``, from its outputs on disk (nothing changes)."""
    started = time.perf_counter()
    pipeline = spec.pipeline
    _require_outputs(pipeline)
    registered, live_items, failed_items = _read_progress(engine, spec.name)
    ids, ordinals = item_ordinals([item.id for item in spec.items], spec.distinct_ids)
    disk, listing_s = _list_outputs(spec, ids)
    last = len(pipeline.stages)
    at = _count_next_stages(disk, len(ids), last)
    held = _held_back(disk, live_items, failed_items)
    return RepairPlan(session=spec.name, file=spec.file, total=len(ids), complete=at[last],
                      in_progress=sum(1 for key in held.live if held.where[key] != last),
                      failed=sum(1 for key in held.failed_only if held.where[key] != last),
                      retry_failed=retry_failed, stages=_stage_plans(pipeline, disk, at, held, retry_failed),
                      registered=registered, listing_s=listing_s, planning_s=time.perf_counter() - started,
                      spec=spec, evidence=_Evidence(disk, frozenset(held.live), ordinals, len(spec.items)))


def _restore_counts(engine: Any, plan: RepairPlan) -> dict[str, int]:
    """Each stage's done bitmap and counter, from the plan's listings (see the module doc)."""
    ev = plan.evidence
    if ev is None or plan.spec is None:
        return {}
    disk = ev.disk
    in_progress = map(ev.live.__contains__, disk.keys()) if ev.live else None
    return restore_done(engine.client, engine.keys, plan.session, plan.spec.pipeline.stage_names, disk.present,
                        in_progress, ev.ordinals, ev.size)


def apply_repair(engine: Any, plan: RepairPlan, *, resume: bool = False,
                 progress: Callable[[int], None] | None = None) -> RepairResult:
    """Register the session if Redis forgot it, then enqueue the plan (atomically deduplicated)."""
    spec = plan.spec
    registration = engine.register_session(spec.record(), items=len(spec.items), resume=resume)
    done = _restore_counts(engine, plan)  # before enqueueing: nothing enqueued now can have finished
    enqueued: dict[str, int] = {}
    skipped = 0
    if plan.to_enqueue:
        metas: Mapping[str, Any] = {item.id: item.message_meta() for item in spec.items}
        ev = plan.evidence
        ordinal = dict(zip(ev.disk.ids, ev.ordinals)) if ev is not None else {}
        for stage in plan.stages:
            if not stage.count:
                continue
            result = engine.enqueue(spec.name, stage.stage, ((i, metas.get(i), ordinal.get(i)) for i in stage.items),
                                    progress=progress)
            enqueued[stage.stage] = result.added
            skipped += result.skipped
    if plan.to_enqueue:
        add_event(engine.client, engine.keys, "repair",
                  f"repair of {spec.name}: {sum(enqueued.values())} task(s) enqueued "
                  + ", ".join(f"{k} {v}" for k, v in enqueued.items()), session=spec.name)
    return RepairResult(spec.name, enqueued, skipped, registration, done)
