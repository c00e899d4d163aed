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
from .errors import ConfigError
from .outcomes import SessionState
from .stores import is_url, open_store, store_key


def check_registry(spec: SessionSpec, engine: Any, resume: bool) -> list[Problem]:
    """The session must not be already active (unless resuming), nor clash with foreign keys."""
    record = spec.record()
    client, keys = engine.client, engine.keys
    existing = client.hgetall(keys.session(spec.name))
    if existing:
        return _registered(spec, existing, record.fingerprint(), resume)
    with client.pipeline(transaction=False) as pipe:
        for stage in spec.pipeline.stage_names:
            pipe.type(keys.queue(stage, spec.name))
        kinds = pipe.execute()
    return [spec.problem(("session",), f"queue name clash: key {keys.queue(stage, spec.name)!r} already exists "
                                       f"({kind}) and belongs to no Symphony session")
            for stage, kind in zip(spec.pipeline.stage_names, kinds) if kind != "none"]


def check_storage(spec: SessionSpec) -> list[Problem]:
    """Every object store the session's outputs go to: its extra is installed, its credentials
    are there, its container exists and they can write to it (one line per store, the first
    problem it has); inputs in an object store exist (one listing per directory)."""
    problems: list[Problem] = []
    places: dict[str, str] = {}
    if is_url(spec.root):
        places[store_key(spec.root)] = spec.root
    for stage in spec.pipeline.stages:
        shape = stage.output_dir_and_pattern(spec.root, spec.name)
        if shape and is_url(shape[0]):
            places.setdefault(store_key(shape[0]), shape[0])
    for where in places.values():
        try:
            why = open_store(where).check_writable(where)
        except ConfigError as exc:
            why = str(exc)
        if why:
            problems.append(spec.problem(("root",), why))
    if problems:
        return problems
    missing: list[str] = []
    by_dir: dict[str, list[str]] = {}
    for item in spec.items:
        path = spec.input_path(item)
        if path and is_url(path):
            directory, _, name = path.rpartition("/")
            by_dir.setdefault(directory, []).append(name)
    for directory, names in by_dir.items():
        try:
            present = set(open_store(directory).list_prefix(directory))
        except ConfigError as exc:
            return [spec.problem(("input",), str(exc))]
        missing += [f"{directory}/{n}" for n in names if n not in present]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        problems.append(spec.problem(("input",), f"input not found: {missing[0]}{more}"))
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
                 tasks_dir: str | Path = "tasks") -> VerificationReport:
    """Load and verify every session file; with an ``engine``, the checks that need Redis too.
    Never raises for bad input: the report lists it."""
    def extra(spec: SessionSpec) -> list[Problem]:
        problems = check_storage(spec)
        return problems + (check_registry(spec, engine, resume) if engine is not None else [])

    return verify_files(paths, extra=extra, tasks_dir=tasks_dir)
