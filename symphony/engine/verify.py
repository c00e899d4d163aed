"""Verification of session files before anything of them is enqueued.

``verify_paths`` loads every session file and runs every check on it, collecting every
problem (file, line, field) instead of stopping at the first. A file with a problem enqueues
nothing. Checks:

* the file's structure, its pipeline and its metadata source (while loading);
* item ids are unique;
* every item carries the required metadata (``require:``), with the right type;
* input files exist (one directory listing per input directory, not one stat per item);
* handlers resolve: Python modules can be found; commands exist on this machine (a warning
  only: they may exist only on the pool's own workers);
* the data root is writable;
* the session is not already active in Redis (unless resuming) and its queue names clash with
  nothing;
* site checks: ``checks: [module:function]`` in the file, or entry points in the group
  ``symphony.checks``; a check is ``fn(spec) -> iterable of Problem``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .definition import compare_definitions
from .errors import Problem, SpecError
from .session_file import SessionRecord, SessionSpec, load_session
from .yamlfile import Locator

MAX_PER_CHECK = 25  # problems listed per check and file; the rest are counted in one line
Check = Callable[[SessionSpec], Iterable[Problem]]


@dataclass(frozen=True)
class VerificationReport:
    files: tuple[str, ...]
    specs: tuple[SessionSpec, ...]  # the files that passed
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def failed_files(self) -> tuple[str, ...]:
        return tuple(sorted({p.file for p in self.problems}))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "files": list(self.files),
                "sessions": [{"session": s.name, "file": s.file, "items": len(s.items)} for s in self.specs],
                "problems": [p.__dict__ for p in self.problems], "warnings": [p.__dict__ for p in self.warnings]}


def session_files(paths: Sequence[str | Path] | None, tasks_dir: str | Path = "tasks") -> list[Path]:
    """Session files named by ``paths`` (files or directories; default: every tasks/*.yaml)."""
    targets = [Path(p) for p in (paths or [tasks_dir])]
    files: list[Path] = []
    for path in targets:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return files


def _capped(problems: list[Problem], what: str) -> list[Problem]:
    if len(problems) <= MAX_PER_CHECK:
        return problems
    first = problems[0]
    return problems[:MAX_PER_CHECK] + [Problem(first.file, None, first.field.split("[")[0] or first.field,
                                               f"... and {len(problems) - MAX_PER_CHECK} more {what}")]


def check_unique_items(spec: SessionSpec) -> list[Problem]:
    if spec.distinct_ids:
        return []
    loc = spec.locator
    seen: dict[str, tuple] = {}
    problems = []
    for item in spec.items:
        if item.id in seen:
            first = seen[item.id]
            first_line = loc.line(first) if loc else None
            where = item.origin + ("id",) if item.origin + ("id",) in loc.lines else item.origin
            problems.append(loc.problem(where, f"duplicate item id {item.id!r}"
                                        + (f" (first on line {first_line})" if first_line else "")))
        else:
            seen[item.id] = item.origin
    return _capped(problems, "duplicate ids")


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "positive_int":
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str) and value != ""
    if kind == "bool":
        return isinstance(value, bool)
    return False


def check_required_metadata(spec: SessionSpec) -> list[Problem]:
    loc = spec.locator
    problems = []
    for name, kind in spec.require:
        missing = []
        for item in spec.items:
            value = (item.meta or {}).get(name)
            if value is None or value == "":
                missing.append(loc.problem(item.origin, f"item {item.id!r} has no {name!r} (required)"))
            elif not _type_ok(value, kind):
                missing.append(loc.problem(item.origin, f"item {item.id!r}: {name}={value!r} is not {kind.replace('_', ' ')}"))
        problems.extend(_capped(missing, f"items without a valid {name!r}"))
    return problems


def check_inputs_exist(spec: SessionSpec) -> list[Problem]:
    loc = spec.locator
    by_dir: dict[str, list[tuple[Any, str]]] = defaultdict(list)
    for item in spec.items:
        path = spec.input_path(item)
        if path:
            directory, name = os.path.split(path)
            by_dir[directory or "."].append((item, name))
    problems = []
    for directory, entries in by_dir.items():
        try:
            present = set(os.listdir(directory))
        except OSError:
            present = set()
        for item, name in entries:
            if name not in present:
                field = item.origin + ("input",) if item.input else ("input",)
                problems.append(loc.problem(field if item.input else item.origin,
                                            f"input file of item {item.id!r} not found: {os.path.join(directory, name)}"))
    return _capped(problems, "missing input files")


def check_handlers(spec: SessionSpec) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings): Python handler modules must be importable here; commands should exist."""
    problems, warnings = [], []
    loc = spec.pipeline.locator or Locator(spec.pipeline.source)
    for index, stage in enumerate(spec.pipeline.stages):
        if stage.handler.kind == "python":
            module = stage.handler.target.split(":")[0]
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                found = None
            if found is None:
                problems.append(loc.problem(("stages", index, "handler"),
                                            f"handler module {module!r} of stage {stage.name} cannot be found"))
        elif not stage.handler.shell:
            program = stage.handler.argv[0]
            if "{" in program:
                continue
            if not (shutil.which(program) or os.path.exists(program)):
                warnings.append(loc.problem(("stages", index, "command", 0),
                                            f"command {program!r} of stage {stage.name} is not on this machine's PATH; "
                                            f"it must exist on the workers of pool {stage.pool}"))
    return problems, warnings


def check_root_writable(spec: SessionSpec) -> list[Problem]:
    path = Path(spec.root)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        return [spec.locator.problem(("root",), f"the data root {spec.root} cannot be created or written "
                                                 f"({probe} is not a writable directory)")]
    return []


def _differences(existing: Mapping[str, str], record: SessionRecord) -> str:
    """What differs between the registered definition (its hash fields) and ``record``, in words."""
    try:
        registered = SessionRecord.from_dict(json.loads(existing.get("spec") or "{}"))
    except Exception:  # an unreadable registration: say so rather than guess
        return "the registered one cannot be read"
    return compare_definitions(registered, record).summary()


def check_registry(spec: SessionSpec, engine: Any, resume: bool) -> list[Problem]:
    """The session must not be already active (unless resuming), nor clash with foreign keys."""
    problems = []
    record = spec.record()
    client, keys = engine.client, engine.keys
    existing = client.hgetall(keys.session(spec.name))
    loc = spec.locator
    if existing:
        if existing.get("fingerprint") != record.fingerprint():
            problems.append(loc.problem(("session",), f"session {spec.name!r} is already registered from "
                                                      f"{existing.get('file') or 'another file'} with a different "
                                                      f"definition ({_differences(existing, record)}); "
                                                      f"'symphony update {spec.name}' applies this file to it when "
                                                      "the stages stay the same; else rename the session, or "
                                                      "'symphony purge' the old one"))
        elif existing.get("state") == "active" and not resume:
            problems.append(loc.problem(("session",), f"session {spec.name!r} is already active; use --resume to "
                                                      "enqueue only what is not queued or running yet"))
        elif existing.get("state") == "cancelled" and not resume:
            problems.append(loc.problem(("session",), f"session {spec.name!r} was cancelled; use --resume to run it again"))
    else:
        with client.pipeline(transaction=False) as pipe:
            for stage in spec.pipeline.stage_names:
                pipe.type(keys.queue(stage, spec.name))
            kinds = pipe.execute()
        for stage, kind in zip(spec.pipeline.stage_names, kinds):
            if kind != "none":
                problems.append(loc.problem(("session",), f"queue name clash: key {keys.queue(stage, spec.name)!r} "
                                                          f"already exists ({kind}) and belongs to no Symphony session"))
    return problems


def _site_checks(spec: SessionSpec) -> list[tuple[str, Check]]:
    found: list[tuple[str, Check]] = []
    for target in spec.checks:
        module, _, name = target.partition(":")
        try:
            found.append((target, getattr(importlib.import_module(module), name)))
        except Exception as exc:
            def broken(_spec: SessionSpec, exc=exc, target=target) -> list[Problem]:
                return [spec.locator.problem(("checks",), f"site check {target!r} cannot be loaded: {exc}")]

            found.append((target, broken))
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="symphony.checks"):
            try:
                found.append((ep.name, ep.load()))
            except Exception:
                continue
    except Exception:  # pragma: no cover
        pass
    return found


def verify_spec(spec: SessionSpec, *, engine: Any = None, resume: bool = False) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of one loaded session."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if not spec.items:
        problems.append(spec.locator.problem(("items",), "the session has no items"))
    problems += check_unique_items(spec)
    problems += check_required_metadata(spec)
    problems += check_inputs_exist(spec)
    handler_problems, handler_warnings = check_handlers(spec)
    problems += handler_problems
    warnings += handler_warnings
    problems += check_root_writable(spec)
    for target, check in _site_checks(spec):
        try:
            problems += list(check(spec) or ())
        except Exception as exc:  # a site check that crashes is a problem, not a traceback
            problems.append(spec.locator.problem(("checks",), f"site check {target!r} failed: {type(exc).__name__}: {exc}"))
    if engine is not None:
        problems += check_registry(spec, engine, resume)
    return problems, warnings


def verify_paths(paths: Sequence[str | Path] | None = None, *, engine: Any = None, resume: bool = False,
                 tasks_dir: str | Path = "tasks") -> VerificationReport:
    """Load and verify every session file; never raises for bad input, reports it."""
    files = session_files(paths, tasks_dir)
    specs: list[SessionSpec] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    names: dict[str, str] = {}
    if not files:
        problems.append(Problem(str(tasks_dir), None, "", "no session files found"))
    for file in files:
        try:
            spec = load_session(file)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        except Exception as exc:  # never a traceback for bad input
            problems.append(Problem(str(file), None, "", f"cannot load: {type(exc).__name__}: {exc}"))
            continue
        file_problems, file_warnings = verify_spec(spec, engine=engine, resume=resume)
        if spec.name in names:
            file_problems.append(spec.locator.problem(("session",), f"session {spec.name!r} is also defined in {names[spec.name]}"))
        names.setdefault(spec.name, spec.file)
        problems += file_problems
        warnings += file_warnings
        if not file_problems:
            specs.append(spec)
    return VerificationReport(files=tuple(str(f) for f in files), specs=tuple(specs), problems=tuple(problems),
                              warnings=tuple(warnings))
