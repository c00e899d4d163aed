"""The verification of session files that needs Redis, on top of the file checks of :mod:`symphony.spec.verify`.

``verify_paths(paths, engine=...)`` runs every file check, then, per file that loaded, these:

* the session is not already registered with a different definition, nor already active or
  cancelled (unless resuming);
* no queue of the session's name exists as a key no Symphony session owns (a clash with another tool).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from symphony.spec import Problem, SessionRecord, SessionSpec, VerificationReport
from symphony.spec import verify_paths as verify_files

from .definition import compare_definitions
from .outcomes import SessionState
from .registry import foreign_queue


def check_registry(spec: SessionSpec, engine: Any, resume: bool, adopt: bool = False) -> list[Problem]:
    """The session must not be already active (unless resuming), nor clash with foreign keys (a
    list of this session's own task messages is not foreign: Redis lost the registration and kept
    the queue; ``adopt`` takes over any list)."""
    record = spec.record()
    client, keys = engine.client, engine.keys
    existing = client.hgetall(keys.session(spec.name))
    if existing:
        return _registered(spec, existing, record.fingerprint(), resume)
    problems = []
    for stage in spec.pipeline.stage_names:
        kind = foreign_queue(client, keys, spec.name, stage, adopt)
        if kind is not None:
            problems.append(spec.problem(("session",), f"queue name clash: key {keys.queue(stage, spec.name)!r} "
                                                       f"already exists ({kind}) and belongs to no Symphony session"
                                                       + ("; pass --adopt to take over the list" if kind == "list"
                                                          else "; rename the session")))
    return problems


def _differences(existing: Mapping[str, str], record: SessionRecord) -> str:
    """What differs between the registered definition (its hash fields) and ``record``, in words."""
    try:
        registered = SessionRecord.from_dict(json.loads(existing.get("spec") or "{}"))
    except Exception:  # an unreadable registration: say so rather than guess
        return "the registered one cannot be read"
    return compare_definitions(registered, record).summary()


def _registered(spec: SessionSpec, existing: dict, fingerprint: str, resume: bool) -> list[Problem]:
    if existing.get("fingerprint") != fingerprint:
        return [spec.problem(("session",), f"session {spec.name!r} is already registered from "
                                           f"{existing.get('file') or 'another file'} with a different definition "
                                           f"({_differences(existing, spec.record())}); 'symphony update {spec.name}' "
                                           "applies this file to it when the stages stay the same; else rename the "
                                           "session, or 'symphony purge' the old one")]
    if resume:
        return []
    if existing.get("state") == SessionState.ACTIVE.value:
        return [spec.problem(("session",), f"session {spec.name!r} is already active; use --resume to enqueue "
                                           "only what is not queued or running yet")]
    if existing.get("state") == SessionState.CANCELLED.value:
        return [spec.problem(("session",), f"session {spec.name!r} was cancelled; use --resume to run it again")]
    return []


def verify_paths(paths: Sequence[str | Path] | None = None, *, engine: Any = None, resume: bool = False,
                 tasks_dir: str | Path = "tasks", adopt: bool = False) -> VerificationReport:
    """Load and verify every session file; with an ``engine``, the checks that need Redis too.
    Never raises for bad input: the report lists it."""
    extra = None if engine is None else (lambda spec: check_registry(spec, engine, resume, adopt))
    return verify_files(paths, extra=extra, tasks_dir=tasks_dir)
