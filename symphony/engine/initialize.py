"""``initialize``: register a verified session and enqueue its items for the first stage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from symphony.spec import SessionSpec

from .core import Engine
from .enqueue import EnqueueResult


@dataclass(frozen=True)
class InitializeResult:
    session: str
    registration: str  # new | same | resumed
    stage: str
    added: int
    skipped: int  # already queued or in flight


def initialize_session(engine: Engine, spec: SessionSpec, *, resume: bool = False, adopt_queues: bool = False,
                       progress: Callable[[int], None] | None = None) -> InitializeResult:
    """Register ``spec`` (idempotent for the same definition) and enqueue every item for its first
    stage; items already queued or in flight are skipped, so re-running never duplicates work."""
    record = spec.record()
    registration = engine.register_session(record, items=len(spec.items), resume=resume, adopt_queues=adopt_queues)
    first = spec.pipeline.stages[0].name
    items = ((item.id, item.message_meta()) for item in spec.items)
    result: EnqueueResult = engine.enqueue(spec.name, first, items, progress=progress)
    return InitializeResult(spec.name, registration, first, result.added, result.skipped)

