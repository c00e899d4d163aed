"""``initialize``: register a verified session and enqueue its items for the first stage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from symphony.spec import SessionSpec

from .core import Engine
from .enqueue import EnqueueResult
from .progress import done_bits, item_ordinals
from .steering import declare


@dataclass(frozen=True)
class InitializeResult:
    session: str
    registration: str  # new | same | resumed
    stage: str
    added: int
    skipped: int  # already queued or in flight
    done: int = 0  # already through the last stage (a session registered before): not enqueued again


def _with_ordinals(spec: SessionSpec) -> Iterator[tuple[str, dict | None, int]]:
    """Every item of the file as (id, metadata, ordinal); a repeated id carries its first place."""
    ids, ordinals = item_ordinals([item.id for item in spec.items], spec.distinct_ids)
    if len(ids) == len(spec.items):
        return ((item.id, item.message_meta(), n) for item, n in zip(spec.items, ordinals))
    where = dict(zip(ids, ordinals))
    return ((item.id, item.message_meta(), where[item.id]) for item in spec.items)


def initialize_session(engine: Engine, spec: SessionSpec, *, resume: bool = False, adopt_queues: bool = False,
                       progress: Callable[[int], None] | None = None) -> InitializeResult:
    """Register ``spec`` (idempotent for the same definition) and enqueue every item for its first
    stage; items already queued or in flight are skipped, so re-running never duplicates work.
    For a session that was registered before (resumed, or the same), items already through its
    last stage are not enqueued again either: a complete session stays complete."""
    record = spec.record()
    registration = engine.register_session(record, items=len(spec.items), resume=resume, adopt_queues=adopt_queues)
    declare(engine.client, engine.keys, spec)  # limits, rate, priority: in force before the first claim
    first = spec.pipeline.stages[0].name
    items = _with_ordinals(spec)
    done = 0
    finished = done_bits(engine.client, engine.keys, spec.name, spec.pipeline.stages[-1].name) \
        if registration != "new" else ""
    if finished:
        wanted = []
        for entry in items:
            if entry[2] < len(finished) and finished[entry[2]] == "1":
                done += 1
            else:
                wanted.append(entry)
        items = iter(wanted)
        if progress and done:
            progress(done)
    result: EnqueueResult = engine.enqueue(spec.name, first, items, progress=progress)
    return InitializeResult(spec.name, registration, first, result.added, result.skipped, done)
