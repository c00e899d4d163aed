"""Session files (``tasks/*.yaml``): one scan job, its pipeline, data root and items.

::

    session: block7-2024-06-01
    pipeline: pipelines/scan.yaml      # relative to this file
    root: ../.symphony-data            # data root, relative to this file
    input: "{root}/input/{item}.json"  # optional: the first stage's input file per item
    require: [vines]                   # metadata every item must carry
    params: {rvm: {seconds: 0.2}}      # per-stage parameter overrides
    items:
      - {id: row-001, vines: 12}
      - row-002                         # an id alone is fine when nothing is required
    # or, for large sessions:
    items_from: {range: {prefix: row-, start: 1, count: 100000, width: 6}}

Paths are resolved relative to the session file, so a checkout runs anywhere. The fields are
declared once (:data:`SESSION_FIELDS`) and checked by :func:`symphony.spec.fields.read_fields`;
the items by :mod:`symphony.spec.items`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import templates
from .fields import INVALID, Context, Field, Invalid, name, read_fields, targets, text, valid
from .items import Item, RowFile, parse_items
from .limits import LIMITS, Limits
from .locations import is_url
from .metadata import load_metadata
from .pipeline import Pipeline, load_pipeline, pipeline_from_dict
from .problems import Problem, SpecError
from .rates import MAX_LIMIT, MAX_PRIORITY
from .yamlfile import Locator, load_yaml_with_list

REQUIRE_TYPES = ("any", "int", "positive_int", "number", "string", "bool")
INPUT_FIELDS = ("root", "session", "item")


@dataclass(frozen=True)
class SessionSpec:
    """A validated session file."""

    name: str
    pipeline: Pipeline
    root: str
    file: str
    items: tuple[Item, ...] = ()
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    input: str | None = None
    require: tuple[tuple[str, str], ...] = ()  # (field, type)
    description: str = ""
    checks: tuple[str, ...] = ()  # extra site checks, "module:function"
    locator: Locator | None = field(default=None, compare=False, repr=False)
    # True when the items' ids are distinct by construction (one generated source: a range, or a
    # metadata table's keys), so nobody needs to look for duplicates
    distinct_ids: bool = field(default=False, compare=False, repr=False)
    # steering (docs/control.md), applied at initialize; not part of the definition (its fingerprint)
    priority: int | None = None  # 0..1000, higher first; None: leave the registered one
    max_running: Mapping[str, int] = field(default_factory=dict)  # this session's own cap per stage
    encrypt_outputs: bool = False  # outputs sealed at rest (AES-GCM, the worker's key), opened for the next stage
    pool_roots: Mapping[str, str] = field(default_factory=dict)  # a pool's own path to the root (a shared mount)

    def root_for(self, pool: str | None) -> str:
        """The data root as the machines of ``pool`` see it (the root itself unless mapped)."""
        return self.pool_roots.get(pool, self.root) if pool else self.root

    def stage_params(self, stage: str) -> dict[str, Any]:
        merged = dict(self.pipeline.stage(stage).params)
        merged.update(self.params.get(self.pipeline.canonical(stage), {}))
        return merged

    def input_path(self, item: Item) -> str | None:
        if item.input:
            return item.input
        if self.input:
            return self.input.format(item=item.id)
        return None

    def problem(self, path: tuple, message: str) -> Problem:
        """A problem at ``path`` of the session file."""
        loc = self.locator or Locator(self.file)
        return loc.problem(path, message)

    def item_problem(self, item: Item, message: str, field_name: str | None = None) -> Problem:
        """A problem about ``item``, where it was defined: its line in the session file (with the
        field, when the item has that field there), or its row in a CSV or JSON Lines file."""
        origin = item.origin
        if origin and isinstance(origin[0], RowFile):
            return origin[0].problem(origin[1], field_name or "", message)
        loc = self.locator or Locator(self.file)
        if field_name and loc.has(origin + (field_name,)):
            origin = origin + (field_name,)
        return loc.problem(origin, message)

    def item_line(self, item: Item) -> int | None:
        if item.origin and isinstance(item.origin[0], RowFile):
            return item.origin[1]
        return self.locator.line(item.origin) if self.locator else None

    def record(self) -> "SessionRecord":
        return SessionRecord(name=self.name, pipeline=self.pipeline, root=self.root, file=self.file,
                             params={k: dict(v) for k, v in self.params.items()}, input=self.input,
                             description=self.description, encrypt_outputs=self.encrypt_outputs,
                             pool_roots=dict(self.pool_roots))


@dataclass(frozen=True)
class SessionRecord:
    """What Redis keeps about a session: enough for any worker to run its stages."""

    name: str
    pipeline: Pipeline
    root: str
    file: str = ""
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    input: str | None = None
    description: str = ""
    encrypt_outputs: bool = False
    pool_roots: Mapping[str, str] = field(default_factory=dict)

    def root_for(self, pool: str | None) -> str:
        """The data root as the machines of ``pool`` see it (the root itself unless mapped)."""
        return self.pool_roots.get(pool, self.root) if pool else self.root

    def stage_params(self, stage: str) -> dict[str, Any]:
        merged = dict(self.pipeline.stage(stage).params)
        merged.update(self.params.get(self.pipeline.canonical(stage), {}))
        return merged

    def input_path(self, item: str, meta: Mapping[str, Any] | None = None) -> str | None:
        if meta and isinstance(meta.get("input"), str):
            return meta["input"]
        if self.input:
            return self.input.format(item=item)
        return None

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "pipeline": self.pipeline.to_dict(), "root": self.root, "file": self.file,
                "params": {k: dict(v) for k, v in self.params.items()}, "input": self.input,
                "description": self.description}
        if self.encrypt_outputs:  # only when set: the definitions of sessions without them are unchanged
            data["encrypt_outputs"] = True
        if self.pool_roots:
            data["pool_roots"] = dict(self.pool_roots)
        return data

    def fingerprint(self) -> str:
        data = self.to_dict()
        data.pop("description", None)
        data.pop("file", None)
        for stage in data["pipeline"].get("stages", ()):  # steering, not definition (docs/control.md)
            stage.pop("max_running", None)
            stage.pop("rate", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SessionRecord":
        return cls(name=data["name"], pipeline=pipeline_from_dict(data["pipeline"]), root=data["root"],
                   file=data.get("file", ""), params=data.get("params") or {}, input=data.get("input"),
                   description=data.get("description", ""), encrypt_outputs=bool(data.get("encrypt_outputs")),
                   pool_roots=dict(data.get("pool_roots") or {}))


def resolve(base: Path, value: str) -> str:
    """``value`` (``~`` and ``$VARS`` expanded) as an absolute path, relative to ``base``."""
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.is_absolute():
        path = base / path
    return os.path.normpath(str(path)).replace("\\", "/")


# --- the fields of a session file ------------------------------------------------------------------------------
def _pipeline(value: Any, ctx: Context) -> Pipeline:
    if not isinstance(value, str) or not value:
        raise Invalid("missing the pipeline file ('pipeline: pipelines/NAME.yaml')")
    path = Path(resolve(ctx.base, value))
    if not path.is_file():
        raise Invalid(f"pipeline file {value!r} not found (looked at {path})")
    try:
        return load_pipeline(path, limits=ctx.extra["limits"])
    except SpecError as exc:
        raise Invalid(problems=exc.problems) from None


def _root(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid("root must be a directory path or an object-store URL (az://container/prefix)")
    if is_url(value):
        if not value.split("://", 1)[1].strip("/"):
            raise Invalid(f"root {value!r} names no container (az://CONTAINER/PREFIX)")
        return value.rstrip("/")
    return resolve(ctx.base, value)


def _absolute_anywhere(path: str) -> bool:
    """Absolute on some machine: /x, C:\\x or C:/x, \\\\server\\share, or a URL."""
    return path.startswith(("/", "\\\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", path)) or is_url(path)


def _pool_roots(value: Any, ctx: Context) -> dict[str, str]:
    """``pool_roots: {windows: 'Z:\\scans', linux: /mnt/scans}``: where each pool's machines see the root."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                              for k, v in value.items()):
        raise Invalid("pool_roots must map pool names to paths (pool_roots: {windows: 'Z:\\scans', linux: /mnt/scans})")
    for pool, path in value.items():
        if not _absolute_anywhere(path):
            raise Invalid(f"the root of pool {pool} must be an absolute path on its machines, not {path!r}",
                          at=(pool,))
    return {k: (v if is_url(v) else v.rstrip("/\\") or v) for k, v in value.items()}


def _flag(value: Any, ctx: Context) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {value!r}")
    return value


def _input(value: Any, ctx: Context) -> str:
    """The template's shape; it is filled with the root and the session's name later."""
    if not isinstance(value, str) or "{item}" not in value:
        raise Invalid("input must be a path template containing {item}")
    try:
        templates.check(value, INPUT_FIELDS, " in input")
    except templates.TemplateError as exc:
        raise Invalid(str(exc)) from None
    return value


def _require(value: Any, ctx: Context) -> tuple[tuple[str, str], ...]:
    """``require: [vines]`` or ``require: {vines: positive_int, block: string}``."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple((v, "any") for v in value)
    if not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
        raise Invalid("require must be a list of field names or a mapping field: type")
    for field_name, kind in value.items():
        if kind not in REQUIRE_TYPES:
            raise Invalid(f"unknown type {kind!r} (known: {', '.join(REQUIRE_TYPES)})", at=(field_name,))
    return tuple(value.items())


def _params(value: Any, ctx: Context) -> dict:
    if not isinstance(value, dict):
        raise Invalid("params must map stage names to parameter mappings")
    return value


def _priority(value: Any, ctx: Context) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise Invalid(f"priority must be an integer from 0 (the default) to {MAX_PRIORITY}, higher first, "
                      f"not {value!r}")
    return value


def _caps(value: Any, ctx: Context) -> dict:
    if not isinstance(value, dict):
        raise Invalid("max_running must map stage names to the most tasks of that stage this session runs at once")
    for stage, cap in value.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_LIMIT:
            raise Invalid(f"must be an integer from 0 to {MAX_LIMIT:,}, not {cap!r}", at=(stage,))
    return dict(value)


def _session_caps(caps: Mapping[Any, Any], pipeline: Any, ctx: Context) -> dict[str, int]:
    """The session's own max_running per stage, by canonical stage name; every stage must exist."""
    clean: dict[str, int] = {}
    for stage_name, cap in caps.items():
        if isinstance(pipeline, Pipeline) and not pipeline.has_stage(str(stage_name)):
            ctx.report(("max_running", stage_name),
                       f"unknown stage {stage_name!r} (stages: {', '.join(pipeline.stage_names)})")
        elif isinstance(pipeline, Pipeline):
            clean[pipeline.canonical(str(stage_name))] = int(cap)
    return clean


SESSION_FIELDS = (
    Field("session", name("session name"), missing="missing the session's name ('session: NAME')"),
    Field("description", text, default=""),
    Field("pipeline", _pipeline, missing="missing the pipeline file ('pipeline: pipelines/NAME.yaml')"),
    Field("root", _root, default="."),
    Field("input", _input),
    Field("require", _require, default=()),
    Field("params", _params, default={}),
    Field("items"),
    Field("items_from"),
    Field("metadata"),
    Field("checks", targets("checks"), default=()),
    Field("encrypt_outputs", _flag, default=False),
    Field("pool_roots", _pool_roots, default={}),
    Field("priority", _priority),
    Field("max_running", _caps, default={}),
)


# --- parsing ---------------------------------------------------------------------------------------------------
def _stage_params(params: Mapping[Any, Any], pipeline: Any, ctx: Context) -> dict[str, dict[str, Any]]:
    """Per-stage parameters, by canonical stage name; every stage named must exist."""
    clean: dict[str, dict[str, Any]] = {}
    known = isinstance(pipeline, Pipeline)
    for stage_name, values in params.items():
        path = ("params", stage_name)
        if known and not pipeline.has_stage(str(stage_name)):
            ctx.report(path, f"unknown stage {stage_name!r} (stages: {', '.join(pipeline.stage_names)})")
        elif not isinstance(values, dict):
            ctx.report(path, "stage params must be a mapping")
        else:
            clean[pipeline.canonical(stage_name) if known else str(stage_name)] = dict(values)
    return clean


def _input_template(v: Mapping[str, Any], base: Path) -> str | None:
    """The input template with the root and the session's name filled in (``{item}`` left)."""
    template = v["input"]
    if template in (None, INVALID) or v["root"] is INVALID:
        return None
    filled = templates.fill(template, {"root": v["root"], "session": v["session"]})
    if os.path.isabs(filled) or is_url(filled):
        return filled
    return resolve(Path(str(base).replace("{", "{{").replace("}", "}}")), filled)


def parse_session(data: Any, loc: Locator, file: Path, *, limits: Limits = LIMITS) -> SessionSpec:
    """Validate the structure of a session file; deeper checks live in :mod:`symphony.spec.verify`."""
    ctx = Context(loc, [], base=file.parent, extra={"limits": limits})
    v = read_fields(data, SESSION_FIELDS, (), ctx,
                    what="a session file must be a mapping with 'session', 'pipeline' and 'items'")
    if v is None:
        raise SpecError(ctx.problems)
    params = _stage_params(v["params"], v["pipeline"], ctx) if v["params"] is not INVALID else {}
    caps = _session_caps(v["max_running"], v["pipeline"], ctx) if v["max_running"] is not INVALID else {}
    metadata = load_metadata(v["metadata"], ctx.base, loc, ctx.problems)
    items = parse_items(v, ctx, metadata)
    if v["items"] is None and v["items_from"] is None and v["metadata"] is None:
        ctx.report((), "a session needs 'items' (a list) or 'items_from'")
    if ctx.problems or not valid(v):
        raise SpecError(ctx.problems)
    return SessionSpec(name=v["session"], pipeline=v["pipeline"], root=v["root"], file=str(file), items=tuple(items),
                       params=params, input=_input_template(v, ctx.base), require=v["require"],
                       description=v["description"], checks=v["checks"], locator=loc,
                       priority=v["priority"], max_running=caps,
                       distinct_ids=v["items"] is None and v["items_from"] is not None,
                       encrypt_outputs=v["encrypt_outputs"], pool_roots=v["pool_roots"])


def load_session(path: str | Path, *, limits: Limits = LIMITS) -> SessionSpec:
    path = Path(path)
    data, loc = load_yaml_with_list(path, "items", limits=limits, what="session file")
    return parse_session(data, loc, path.resolve(), limits=limits)
