"""One declarative description of a file's fields, and the one function that walks it.

A file (or a part of one: a stage, the defaults) is a tuple of :class:`Field`: its name, the check
that turns the raw YAML value into the model's value (raising :class:`Invalid` with a message,
and optionally the sub-path it is about), its default and, for a required field, what to say
when it is missing. :func:`read_fields` reports unknown fields (with a "did you mean"), missing
ones and every invalid value, each at its file, line and field, and returns the checked values;
a value that failed is :data:`INVALID`. The checks below are the vocabulary the files share.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .names import name_problem, role_problem
from .problems import Problem
from .yamlfile import Locator, PathKey


class Invalid(Exception):
    """A field's value is wrong: ``message``, about ``at`` (a path below the field), or the
    problems of another file (a pipeline a session file names)."""

    def __init__(self, message: str = "", at: PathKey = (), problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.message, self.at, self.problems = message, tuple(at), tuple(problems)


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()  # the value of a field whose check failed

Check = Callable[[Any, "Context"], Any]


@dataclass(frozen=True)
class Field:
    name: str
    check: Check | None = None  # raw value -> model value; raises Invalid
    default: Any = None  # when the field is absent or null
    missing: str | None = None  # a required field: the message when it is absent


@dataclass
class Context:
    """What checks may need: where the file is, its locator, the problems found so far."""

    loc: Locator
    problems: list[Problem]
    base: Path = field(default_factory=Path)
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self, path: PathKey, message: str) -> None:
        self.problems.append(self.loc.problem(path, message))


def unknown_fields(raw: Mapping[Any, Any], allowed: Sequence[str], path: PathKey, ctx: Context) -> None:
    for key in raw:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(allowed)})"
            ctx.report(path + (key,), f"unknown field {key!r}{suggestion}")


def read_fields(raw: Any, fields: Sequence[Field], path: PathKey, ctx: Context, *, what: str,
                defaults: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Check the mapping ``raw`` against ``fields``; None (and a problem saying ``what``) if it is
    not a mapping. ``defaults`` overrides the fields' own defaults (already checked values)."""
    if not isinstance(raw, dict):
        ctx.report(path, what)
        return None
    unknown_fields(raw, [f.name for f in fields], path, ctx)
    out: dict[str, Any] = {}
    for f in fields:
        value = raw.get(f.name)
        if value is None:
            if f.missing:
                ctx.report(path + (f.name,), f.missing)
                out[f.name] = INVALID
            else:
                out[f.name] = (defaults or {}).get(f.name, f.default)
            continue
        out[f.name] = _checked(f, value, path, ctx)
    return out


def _checked(f: Field, value: Any, path: PathKey, ctx: Context) -> Any:
    if f.check is None:
        return value
    try:
        return f.check(value, ctx)
    except Invalid as exc:
        ctx.problems.extend(exc.problems)
        if exc.message:
            ctx.report(path + (f.name,) + exc.at, exc.message)
        return INVALID


def valid(values: Mapping[str, Any]) -> bool:
    return all(v is not INVALID for v in values.values())


# --- the shared vocabulary of checks ---------------------------------------------------------------------
def text(value: Any, ctx: Context) -> str:
    """Anything, as text (descriptions)."""
    return str(value)


def flag(name: str) -> Check:
    def check(value: Any, ctx: Context) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"{name} must be true or false, not {value!r}")
        return value
    return check


def number(what: str, minimum: float, *, integer: bool = False) -> Check:
    kind = "an integer" if integer else "a number"

    def check(value: Any, ctx: Context) -> Any:
        types = (int,) if integer else (int, float)
        if not isinstance(value, types) or isinstance(value, bool) or not value >= minimum:
            raise Invalid(f"{what} must be {kind} >= {minimum}, not {value!r}")
        return value
    return check


def _named(what: str, problem_of: Callable[[Any], str | None]) -> Check:
    def check(value: Any, ctx: Context) -> str:
        problem = problem_of(value)
        if problem:
            raise Invalid(f"{what}: {problem}")
        return value
    return check


def role(what: str) -> Check:
    """A stage, alias or pool name (it becomes part of queue names)."""
    return _named(what, role_problem)


def name(what: str) -> Check:
    """A session or item name (it becomes part of key names and paths)."""
    return _named(what, name_problem)


def roles(what: str) -> Check:
    """One name or a list of names."""
    one = role(what)

    def check(value: Any, ctx: Context) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise Invalid(f"{what}es must be a list of names" if what == "alias" else f"{what} must be a list of names")
        for index, v in enumerate(values):
            try:
                one(v, ctx)
            except Invalid as exc:
                raise Invalid(exc.message, at=(index,)) from None
        return tuple(values)
    return check


def mapping(message: str) -> Check:
    """A mapping with string keys."""
    def check(value: Any, ctx: Context) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise Invalid(message)
        return dict(value)
    return check


def targets(what: str) -> Check:
    """One ``module:function`` or a list of them."""
    def check(value: Any, ctx: Context) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and is_target(v) for v in values):
            raise Invalid(f"{what} must be a list of 'module:function'")
        return tuple(values)
    return check


def is_target(value: str) -> bool:
    """``module.sub:function``: identifiers on both sides of one colon."""
    if value.count(":") != 1:
        return False
    module, func = value.split(":")
    return bool(module) and all(p.isidentifier() for p in module.split(".")) and func.isidentifier()


def keys(fields: Iterable[Field]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)
