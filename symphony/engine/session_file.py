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

Paths are resolved relative to the session file, so a checkout runs anywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import Problem, SpecError
from .names import name_problem
from .pipeline import Pipeline, _unknown, load_pipeline
from .yamlfile import Locator, load_yaml

SESSION_KEYS = ("session", "description", "pipeline", "root", "input", "require", "params", "items",
                "items_from", "metadata", "checks")
REQUIRE_TYPES = ("any", "int", "positive_int", "number", "string", "bool")


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    meta: Mapping[str, Any] | None = None
    input: str | None = None
    origin: tuple = ()  # where it was defined in the file, e.g. ("items", 3), for error messages

    def message_meta(self) -> dict[str, Any] | None:
        """What travels with the task in its message (``m``): the metadata, and the input path."""
        meta = dict(self.meta) if self.meta else {}
        if self.input:
            meta["input"] = self.input
        return meta or None


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
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    locator: Locator | None = field(default=None, compare=False, repr=False)
    # True when the items' ids are distinct by construction (one generated source: a range, or a
    # metadata table's keys), so nobody needs to look for duplicates
    distinct_ids: bool = field(default=False, compare=False, repr=False)

    def stage_params(self, stage: str) -> dict[str, Any]:
        merged = dict(self.pipeline.stage(stage).params)
        merged.update(self.params.get(self.pipeline.canonical(stage), {}))
        return merged

    def input_path(self, item: Item) -> str | None:
        if item.input:
            return item.input
        if self.input:
            return self.input.format(root=self.root, session=self.name, item=item.id)
        return None

    def record(self) -> "SessionRecord":
        return SessionRecord(name=self.name, pipeline=self.pipeline, root=self.root, file=self.file,
                             params={k: dict(v) for k, v in self.params.items()}, input=self.input,
                             description=self.description)


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

    def stage_params(self, stage: str) -> dict[str, Any]:
        merged = dict(self.pipeline.stage(stage).params)
        merged.update(self.params.get(self.pipeline.canonical(stage), {}))
        return merged

    def input_path(self, item: str, meta: Mapping[str, Any] | None = None) -> str | None:
        if meta and isinstance(meta.get("input"), str):
            return meta["input"]
        if self.input:
            return self.input.format(root=self.root, session=self.name, item=item)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pipeline": self.pipeline.to_dict(), "root": self.root, "file": self.file,
                "params": {k: dict(v) for k, v in self.params.items()}, "input": self.input,
                "description": self.description}

    def fingerprint(self) -> str:
        data = self.to_dict()
        data.pop("description", None)
        data.pop("file", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SessionRecord":
        from .pipeline import pipeline_from_dict

        return cls(name=data["name"], pipeline=pipeline_from_dict(data["pipeline"]), root=data["root"],
                   file=data.get("file", ""), params=data.get("params") or {}, input=data.get("input"),
                   description=data.get("description", ""))


def _resolve(base: Path, value: str) -> str:
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.is_absolute():
        path = base / path
    return os.path.normpath(str(path)).replace("\\", "/")


MAX_RANGE_ITEMS = 10_000_000  # items one items_from range may generate
MAX_NAME = 200  # the longest session or item name (engine.names)


def _range_items(spec: Any, loc: Locator, path: tuple, problems: list[Problem]) -> list[Item]:
    if not isinstance(spec, dict):
        problems.append(loc.problem(path, "range must be a mapping with prefix, start, count and width"))
        return []
    _unknown(spec, ("prefix", "start", "count", "width"), path, loc, problems)
    prefix = spec.get("prefix", "item-")
    start, count, width = spec.get("start", 1), spec.get("count"), spec.get("width", 0)
    ok = True
    for key, value in (("start", start), ("count", count), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(loc.problem(path + (key,), f"{key} must be a non-negative integer, not {value!r}"))
            ok = False
    if not isinstance(prefix, str):
        problems.append(loc.problem(path + ("prefix",), "prefix must be a string"))
        ok = False
    if not ok:
        return []
    if count > MAX_RANGE_ITEMS:  # a typo must be a problem, not a process building a billion items
        problems.append(loc.problem(path + ("count",), f"count {count:,} is more than {MAX_RANGE_ITEMS:,} items; "
                                                       "split the work into several sessions"))
        return []
    if width > MAX_NAME:
        problems.append(loc.problem(path + ("width",), f"width {width:,} would make ids longer than a name may be "
                                                       f"({MAX_NAME} characters)"))
        return []
    if count:
        for n in (start, start + count - 1):  # the shortest and the longest generated id
            problem = name_problem(f"{prefix}{n:0{width}d}")
            if problem:
                problems.append(loc.problem(path + ("prefix",), f"generated item id: {problem}"))
                return []
    return [Item(f"{prefix}{n:0{width}d}", origin=path) for n in range(start, start + count)]


def parse_items(data: Mapping[str, Any], loc: Locator, problems: list[Problem],
                metadata: dict[str, dict[str, Any]] | None = None) -> list[Item]:
    """The items of a session file, from ``items`` and/or ``items_from``, with their metadata."""
    items: list[Item] = []
    raw_items = data.get("items")
    if raw_items is not None:
        if not isinstance(raw_items, list):
            problems.append(loc.problem(("items",), "items must be a list of ids or mappings with an 'id'"))
        else:
            for index, raw in enumerate(raw_items):
                path = ("items", index)
                if isinstance(raw, (str, int)) and not isinstance(raw, bool):
                    item_id, meta = str(raw), None
                elif isinstance(raw, dict):
                    item_id = raw.get("id")
                    if isinstance(item_id, int) and not isinstance(item_id, bool):
                        item_id = str(item_id)
                    meta = {k: v for k, v in raw.items() if k not in ("id", "input")} or None
                    if raw.get("input") is not None and not isinstance(raw.get("input"), str):
                        problems.append(loc.problem(path + ("input",), "input must be a path string"))
                else:
                    problems.append(loc.problem(path, f"an item must be an id or a mapping with 'id', not {raw!r}"))
                    continue
                problem = name_problem(item_id)
                if problem:
                    problems.append(loc.problem(path + ("id",), f"item id: {problem}"))
                    continue
                inp = raw.get("input") if isinstance(raw, dict) and isinstance(raw.get("input"), str) else None
                items.append(Item(item_id, meta, inp, origin=path))
    source = data.get("items_from")
    if source is not None:
        if source == "metadata":
            if metadata is None:
                problems.append(loc.problem(("items_from",), "items_from: metadata needs a 'metadata' source"))
            else:
                origin = ("items_from",)
                for item_id, row in metadata.items():
                    if name_problem(item_id):
                        problems.append(loc.problem(("metadata",), f"item id from the metadata source: "
                                                                   f"{name_problem(item_id)}"))
                        continue
                    inp = row.pop("input", None) if "input" in row else None
                    items.append(Item(item_id, row or None, inp if isinstance(inp, str) else None, origin))
                metadata = None  # these items already carry their rows
        elif not isinstance(source, dict) or len(source) != 1:
            problems.append(loc.problem(("items_from",), "items_from must be 'metadata' or one source, e.g. {range: {...}}"))
        elif "range" in source:
            items.extend(_range_items(source["range"], loc, ("items_from", "range"), problems))
        else:
            kind = next(iter(source))
            problems.append(loc.problem(("items_from", kind), f"unknown item source {kind!r} (known: range, metadata)"))
    if metadata:
        merged = []
        for item in items:
            row = metadata.get(item.id)
            if row:
                meta = {**{k: v for k, v in row.items() if k != "input"}, **dict(item.meta or {})}
                item = Item(item.id, meta or None, item.input, item.origin)
            merged.append(item)
        items = merged
    return items


def _parse_require(value: Any, loc: Locator, problems: list[Problem]) -> list[tuple[str, str]]:
    """``require: [vines]`` or ``require: {vines: positive_int, block: string}``."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [(v, "any") for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out = []
        for name, kind in value.items():
            if kind not in REQUIRE_TYPES:
                problems.append(loc.problem(("require", name), f"unknown type {kind!r} (known: {', '.join(REQUIRE_TYPES)})"))
            else:
                out.append((name, kind))
        return out
    problems.append(loc.problem(("require",), "require must be a list of field names or a mapping field: type"))
    return []


def parse_session(data: Any, loc: Locator, file: Path) -> SessionSpec:
    """Validate the structure of a session file; deeper checks live in :mod:`engine.verify`."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise SpecError([loc.problem((), "a session file must be a mapping with 'session', 'pipeline' and 'items'")])
    _unknown(data, SESSION_KEYS, (), loc, problems)
    name = data.get("session")
    if name is None:
        problems.append(loc.problem(("session",), "missing the session's name ('session: NAME')"))
    elif name_problem(name):
        problems.append(loc.problem(("session",), f"session name: {name_problem(name)}"))
    base = file.parent
    pipeline = None
    pipeline_ref = data.get("pipeline")
    if not isinstance(pipeline_ref, str) or not pipeline_ref:
        problems.append(loc.problem(("pipeline",), "missing the pipeline file ('pipeline: pipelines/NAME.yaml')"))
    else:
        pipeline_path = Path(_resolve(base, pipeline_ref))
        if not pipeline_path.is_file():
            problems.append(loc.problem(("pipeline",), f"pipeline file {pipeline_ref!r} not found (looked at {pipeline_path})"))
        else:
            try:
                pipeline = load_pipeline(pipeline_path)
            except SpecError as exc:
                problems.extend(exc.problems)
    root_value = data.get("root", ".")
    if not isinstance(root_value, str) or not root_value:
        problems.append(loc.problem(("root",), "root must be a directory path"))
        root_value = "."
    root = _resolve(base, root_value)
    input_template = data.get("input")
    if input_template is not None:
        if not isinstance(input_template, str) or "{item}" not in input_template:
            problems.append(loc.problem(("input",), "input must be a path template containing {item}"))
            input_template = None
        else:
            try:
                input_template = input_template.format(root=root, session=name, item="{item}")
            except (KeyError, IndexError, ValueError) as exc:
                problems.append(loc.problem(("input",), f"bad placeholder in input: {exc}"))
                input_template = None
            if input_template and not os.path.isabs(input_template):
                input_template = _resolve(base, input_template)
    require = _parse_require(data.get("require"), loc, problems)
    checks = data.get("checks", []) or []
    if isinstance(checks, str):
        checks = [checks]
    if not isinstance(checks, list) or not all(isinstance(c, str) and c.count(":") == 1 for c in checks):
        problems.append(loc.problem(("checks",), "checks must be a list of 'module:function' site checks"))
        checks = []
    params = data.get("params", {}) or {}
    if not isinstance(params, dict):
        problems.append(loc.problem(("params",), "params must map stage names to parameter mappings"))
        params = {}
    clean_params: dict[str, dict[str, Any]] = {}
    for stage_name, values in params.items():
        path = ("params", stage_name)
        if pipeline is not None and not pipeline.has_stage(str(stage_name)):
            problems.append(loc.problem(path, f"unknown stage {stage_name!r} (stages: {', '.join(pipeline.stage_names)})"))
            continue
        if not isinstance(values, dict):
            problems.append(loc.problem(path, "stage params must be a mapping"))
            continue
        canonical = pipeline.canonical(stage_name) if pipeline is not None else str(stage_name)
        clean_params[canonical] = dict(values)
    from .metadata import load_metadata

    metadata = load_metadata(data.get("metadata"), base, loc, problems)
    items = parse_items(data, loc, problems, metadata)
    if "items" not in data and "items_from" not in data and "metadata" not in data:
        problems.append(loc.problem((), "a session needs 'items' (a list) or 'items_from'"))
    if problems:
        raise SpecError(problems)
    return SessionSpec(name=name, pipeline=pipeline, root=root, file=str(file), items=tuple(items),
                       params=clean_params, input=input_template, require=tuple(require),
                       description=str(data.get("description", "")), checks=tuple(checks), raw=data, locator=loc,
                       distinct_ids="items" not in data and data.get("items_from") is not None)


def load_session(path: str | Path) -> SessionSpec:
    path = Path(path)
    data, loc = load_yaml(path)
    return parse_session(data, loc, path.resolve())
