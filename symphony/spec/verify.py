"""Verification of session files before anything is enqueued: everything that needs only the files.

``verify_paths`` loads every session file and runs every check on it, collecting every
problem (file, line, field) instead of stopping at the first. A file with a problem enqueues
nothing, and a file that cannot be loaded at all (too large, hostile, broken) is one problem of
that file: the other files are still verified. Checks:

* the file's structure, its pipeline and its metadata source (while loading, within
  :mod:`symphony.spec.limits`);
* item ids are unique;
* every item carries the required metadata (``require:``), with the right type;
* input files exist (one directory listing per input directory, not one stat per item);
* handlers resolve: Python modules can be found, and are not in the standard library unless the
  pipeline allows them (``allow_stdlib_handlers``); commands exist on this machine (a warning
  only: they may exist only on the pool's own workers);
* the data root can be created and written (a directory is made and removed there);
* site checks: ``checks: [module:function]`` in the file, or entry points in the group
  ``symphony.checks``; a check is ``fn(spec) -> iterable of Problem``;
* ``extra``: checks a caller adds (the engine adds those that need Redis: the session is not
  already active, its queue names clash with nothing).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .locations import is_url
from .problems import Problem, SpecError
from .session import SessionSpec, load_session
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
    if not paths and not Path(tasks_dir).is_dir():
        return []  # verify_paths says where it looked
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
    seen: dict[str, Any] = {}
    problems = []
    for item in spec.items:
        first = seen.setdefault(item.id, item)
        if first is not item:
            first_line = spec.item_line(first)
            problems.append(spec.item_problem(item, f"duplicate item id {item.id!r}"
                                              + (f" (first on line {first_line})" if first_line else ""), "id"))
    return _capped(problems, "duplicate ids")


_TYPES: dict[str, Callable[[Any], bool]] = {
    "any": lambda v: True,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "positive_int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str) and v != "",
    "bool": lambda v: isinstance(v, bool),
}


def check_required_metadata(spec: SessionSpec) -> list[Problem]:
    problems = []
    for name, kind in spec.require:
        type_ok = _TYPES[kind]
        missing = []
        for item in spec.items:
            value = item.meta.get(name) if item.meta else None
            if value is None or value == "":
                missing.append(spec.item_problem(item, f"item {item.id!r} has no {name!r} (required)"))
            elif not type_ok(value):
                missing.append(spec.item_problem(item, f"item {item.id!r}: {name}={value!r} is not "
                                                       f"{kind.replace('_', ' ')}", name))
        problems.extend(_capped(missing, f"items without a valid {name!r}"))
    return problems


def check_inputs_exist(spec: SessionSpec) -> list[Problem]:
    by_dir: dict[str, list[tuple[Any, str]]] = defaultdict(list)
    for item in spec.items:
        path = spec.input_path(item)
        if path and not is_url(path):  # inputs in an object store: the engine lists them through its store
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
                problems.append(spec.item_problem(item, f"input file of item {item.id!r} not found: "
                                                        f"{os.path.join(directory, name)}", "input" if item.input else None))
    return _capped(problems, "missing input files")


def in_standard_library(target: str) -> bool:
    """Whether the handler ``module:function`` lives in Python's standard library (``os:system``,
    ``sys:exit``, ``shutil:rmtree``, ``builtins:print``...)."""
    top = target.partition(":")[0].split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def _python_handler(stage: Any, where: tuple, spec: SessionSpec, loc: Locator) -> list[Problem]:
    target = stage.handler.target
    if in_standard_library(target) and target not in spec.pipeline.allow_stdlib_handlers:
        return [loc.problem(where, f"handler {target!r} of stage {stage.name} is in the Python standard library; "
                                   "such a handler can end the worker or act on the whole machine. If you mean it, "
                                   f"list it in the pipeline's allow_stdlib_handlers: [{target}]")]
    module = target.split(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return [loc.problem(where, f"handler module {module!r} of stage {stage.name} cannot be found")]
    return []


def _command_handler(stage: Any, where: tuple, loc: Locator) -> list[Problem]:
    program = stage.handler.argv[0]
    if stage.handler.shell or "{" in program or shutil.which(program) or os.path.exists(program):
        return []
    return [loc.problem(where + (0,), f"command {program!r} of stage {stage.name} is not on this machine's PATH; "
                                      f"it must exist on the workers of pool {stage.pool}")]


def check_handlers(spec: SessionSpec) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings): Python handler modules must be importable here and not in the
    standard library (unless allowed); commands should exist."""
    problems, warnings = [], []
    loc = spec.pipeline.locator or Locator(spec.pipeline.source)
    for index, stage in enumerate(spec.pipeline.stages):
        if stage.handler.kind == "python":
            problems += _python_handler(stage, ("stages", index, "handler"), spec, loc)
        else:
            warnings += _command_handler(stage, ("stages", index, "command"), loc)
    return problems, warnings


def root_not_writable(root: str) -> str | None:
    """Why the local directory ``root`` cannot be created or written (one sentence), or None: a
    directory is made (and removed) in its nearest existing ancestor (the permission bits alone
    say yes to root, even in /proc)."""
    probe = Path(root)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    why = "" if probe.is_dir() else "is not a directory"
    if not why:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".symphony-probe-", dir=probe))
        except OSError as exc:
            why = f"is not writable: {exc.strerror or exc}"
    return f"the data root {root} cannot be created or written ({probe} {why})" if why else None


def check_root_writable(spec: SessionSpec) -> list[Problem]:
    """The data root exists and is writable, or can be created (:func:`root_not_writable`).
    An object-store root is checked by the engine, through its store."""
    if is_url(spec.root):
        return []
    why = root_not_writable(spec.root)
    return [spec.problem(("root",), why)] if why else []


def _site_checks(spec: SessionSpec) -> list[tuple[str, Check]]:
    found: list[tuple[str, Check]] = []
    for target in spec.checks:
        module, _, name = target.partition(":")
        try:
            found.append((target, getattr(importlib.import_module(module), name)))
        except Exception as exc:
            def broken(_spec: SessionSpec, exc=exc, target=target) -> list[Problem]:
                return [spec.problem(("checks",), f"site check {target!r} cannot be loaded: {exc}")]

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


def _run_checks(spec: SessionSpec, checks: Iterable[tuple[str, Check]]) -> list[Problem]:
    problems: list[Problem] = []
    for target, check in checks:
        try:
            problems += list(check(spec) or ())
        except Exception as exc:  # a check that crashes is a problem, not a traceback
            problems.append(spec.problem(("checks",), f"site check {target!r} failed: {type(exc).__name__}: {exc}"))
    return problems


def verify_spec(spec: SessionSpec, extra: Check | None = None) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of one loaded session; ``extra`` adds a caller's checks."""
    problems: list[Problem] = []
    if not spec.items:
        problems.append(spec.problem(("items",), "the session has no items"))
    problems += check_unique_items(spec)
    problems += check_required_metadata(spec)
    problems += check_inputs_exist(spec)
    handler_problems, warnings = check_handlers(spec)
    problems += handler_problems
    problems += check_root_writable(spec)
    problems += _run_checks(spec, _site_checks(spec))
    if extra is not None:
        problems += list(extra(spec))
    return problems, warnings


def _load(file: Path) -> tuple[SessionSpec | None, list[Problem]]:
    """One file loaded, or its problems: whatever is wrong with it (too large, hostile, broken) stays
    a problem of that file."""
    try:
        return load_session(file), []
    except SpecError as exc:
        return None, list(exc.problems)
    except (MemoryError, RecursionError) as exc:
        return None, [Problem(str(file), None, "", f"cannot load: the file is too large or too deeply nested "
                                                   f"({type(exc).__name__})")]
    except Exception as exc:  # never a traceback for bad input
        return None, [Problem(str(file), None, "", f"cannot load: {type(exc).__name__}: {exc}")]


def _nothing_found(paths: Sequence[str | Path] | None, tasks_dir: str | Path) -> Problem:
    where = Path(paths[0] if paths else tasks_dir)
    if not where.exists():
        return Problem(str(where), None, "", f"no session files found: there is no {where.resolve()}")
    return Problem(str(where), None, "", f"no session files found (looked for *.yaml in {where.resolve()})")


def verify_paths(paths: Sequence[str | Path] | None = None, *, extra: Check | None = None,
                 tasks_dir: str | Path = "tasks") -> VerificationReport:
    """Load and verify every session file; never raises for bad input, reports it. ``extra``
    adds checks (the engine's, which need Redis)."""
    files = session_files(paths, tasks_dir)
    specs: list[SessionSpec] = []
    problems: list[Problem] = [] if files else [_nothing_found(paths, tasks_dir)]
    warnings: list[Problem] = []
    names: dict[str, str] = {}
    for file in files:
        spec, file_problems = _load(file)
        if spec is None:
            problems += file_problems
            continue
        file_problems, file_warnings = verify_spec(spec, extra)
        if spec.name in names:
            file_problems.append(spec.problem(("session",), f"session {spec.name!r} is also defined in {names[spec.name]}"))
        names.setdefault(spec.name, spec.file)
        problems += file_problems
        warnings += file_warnings
        if not file_problems:
            specs.append(spec)
    return VerificationReport(files=tuple(str(f) for f in files), specs=tuple(specs), problems=tuple(problems),
                              warnings=tuple(warnings))
