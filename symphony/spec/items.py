"""The items of a session: listed in the file (``items``), generated, or read from rows.

::

    items:                                  # ids, or mappings with an id, metadata and an input
      - {id: row-001, vines: 38}
      - row-002
    items_from: {range: {prefix: row-, start: 1, count: 100000, width: 6}}
    items_from: {csv: rows.csv}             # a header row, then one row per item (column id)
    items_from: {jsonl: rows.jsonl}         # one JSON object per line, each with an "id"
    items_from: metadata                    # every row of the metadata source is an item

Every source counts towards one limit (``Limits.items``). Rows read from a CSV or JSON Lines
file keep their file and line (and, for CSV, the column of each field), so a problem found later
(a required field missing) names that file's line, not the session file's.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .fields import Context, unknown_fields
from .limits import Limits
from .names import name_problem
from .problems import Problem
from .yamlfile import FlowItems, entries, is_list, read_text

MAX_NAME = 200  # the longest session or item name (symphony.spec.names)


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    meta: Mapping[str, Any] | None = None  # may be shared by items with the same fields: never changed
    input: str | None = None
    # where it was defined: a path in the session file, (RowFile, line) for a row of a CSV or JSON
    # Lines file, or the index of an entry of ``items`` (a million items keep a million ints, not tuples)
    where: tuple | int = ()

    @property
    def origin(self) -> tuple:
        """Where the item was defined, for error messages: a path in the session file, e.g.
        ``("items", 3)``, or ``(RowFile, line)``."""
        return ("items", self.where) if isinstance(self.where, int) else self.where

    def message_meta(self) -> dict[str, Any] | None:
        """What travels with the task in its message (``m``): the metadata, and the input path."""
        meta = dict(self.meta) if self.meta else {}
        if self.input:
            meta["input"] = self.input
        return meta or None


@dataclass(frozen=True)
class RowFile:
    """A CSV or JSON Lines file that items come from (the first part of their ``origin``)."""

    file: str
    columns: Mapping[str, int] = field(default_factory=dict)  # CSV: field -> column number (1-based)

    def problem(self, line: int | None, field_name: str, message: str, column: int | None = None) -> Problem:
        return Problem(self.file, line, field_name, message, column or self.columns.get(field_name))


class _Budget:
    """Items still allowed in this session (every source counts)."""

    def __init__(self, limits: Limits):
        self.limits, self.left = limits, limits.items

    def take(self, n: int = 1) -> bool:
        self.left -= n
        return self.left >= 0

    def message(self) -> str:
        return (f"more than {self.limits.items:,} items, the limit per session; split the work into several "
                "sessions")


class _Shared:
    """One dict for the items whose metadata is the same (``{vines: 38}`` on many rows), while
    there are few distinct ones: a million items need not hold a million equal dicts."""

    MOST = 4096

    def __init__(self) -> None:
        self.known: dict[tuple, dict] = {}

    def get(self, meta: dict) -> dict:
        try:  # True == 1 == 1.0, but they are not the same value: the types are part of the key
            key = (tuple(meta.items()), tuple(map(type, meta.values())))
            found = self.known.get(key)
        except TypeError:  # a value that is a list or a mapping
            return meta
        if found is not None:
            return found
        if len(self.known) < self.MOST:
            self.known[key] = meta
        return meta


# --- one entry, wherever it comes from ------------------------------------------------------------------------
def _entry(raw: Any, fresh: bool = False) -> tuple[Any, dict | None, Any, str | None]:
    """(id, metadata, input, what is wrong with its shape) of one raw entry (``fresh``: a mapping
    nothing else holds, which may become the metadata itself)."""
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        return str(raw), None, None, None
    if not isinstance(raw, dict):
        return None, None, None, f"an item must be an id or a mapping with 'id', not {raw!r}"
    if fresh:
        item_id, inp = raw.pop("id", None), raw.pop("input", None)
        meta = raw or None
    else:
        item_id, inp = raw.get("id"), raw.get("input")
        meta = {k: v for k, v in raw.items() if k not in ("id", "input")} or None
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    return item_id, meta, inp, None


def _inline(raw_items: Any, ctx: Context, budget: _Budget) -> list[Item]:
    if not is_list(raw_items):
        ctx.report(("items",), "items must be a list of ids or mappings with an 'id'")
        return []
    if not budget.take(len(raw_items)):
        ctx.report(("items",), budget.message())
        return []
    items = []
    shared = _Shared()
    fresh = isinstance(raw_items, FlowItems)
    for index, raw in entries(raw_items, ctx.problems, ("items",)):
        path = ("items", index)
        item_id, meta, inp, wrong = _entry(raw, fresh)
        if wrong:
            ctx.report(path, wrong)
            continue
        if inp is not None and not isinstance(inp, str):
            ctx.report(path + ("input",), "input must be a path string")
            inp = None
        problem = name_problem(item_id)
        if problem:
            ctx.report(path + ("id",), f"item id: {problem}")
            continue
        if meta is not None:
            meta = shared.get(meta)
        items.append(Item(item_id, meta, inp, index))
    return items


# --- items_from ------------------------------------------------------------------------------------------------
def _range(spec: Any, ctx: Context, budget: _Budget) -> list[Item]:
    path = ("items_from", "range")
    if not isinstance(spec, dict):
        ctx.report(path, "range must be a mapping with prefix, start, count and width")
        return []
    unknown_fields(spec, ("prefix", "start", "count", "width"), path, ctx)
    prefix = spec.get("prefix", "item-")
    start, count, width = spec.get("start", 1), spec.get("count"), spec.get("width", 0)
    before = len(ctx.problems)
    for key, value in (("start", start), ("count", count), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            ctx.report(path + (key,), f"{key} must be a non-negative integer, not {value!r}")
    if not isinstance(prefix, str):
        ctx.report(path + ("prefix",), "prefix must be a string")
    if len(ctx.problems) != before:
        return []
    if not budget.take(count):  # a typo must be a problem, not a process building a billion items
        ctx.report(path + ("count",), f"count {count:,}: {budget.message()}")
        return []
    if width > MAX_NAME:
        ctx.report(path + ("width",), f"width {width:,} would make ids longer than a name may be ({MAX_NAME} characters)")
        return []
    for n in ((start, start + count - 1) if count else ()):  # the shortest and the longest generated id
        problem = name_problem(f"{prefix}{n:0{width}d}")
        if problem:
            ctx.report(path + ("prefix",), f"generated item id: {problem}")
            return []
    return [Item(f"{prefix}{n:0{width}d}", where=path) for n in range(start, start + count)]


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def cell(value: str) -> Any:
    """A CSV cell's value: a number when it is written as one, None when empty, else the text."""
    if value == "":
        return None
    match = _NUMBER.fullmatch(value)
    if match is None:
        return value
    return float(value) if match.group(1) or "e" in value.lower() else int(value)


def _rows_file(value: Any, kind: str, ctx: Context) -> tuple[Path, str] | None:
    if not isinstance(value, str) or not value:
        ctx.report(("items_from", kind), f"{kind} must be the path of a file, relative to the session file")
        return None
    path = Path(value) if Path(value).is_absolute() else ctx.base / value
    if not path.is_file():
        ctx.report(("items_from", kind), f"{kind} file {value!r} not found (looked at {path})")
        return None
    return path, read_text(path, ctx.extra["limits"].rows_bytes, f"{kind} file")


def _row_item(rows: RowFile, line: int, raw: dict, ctx: Context) -> Item | None:
    item_id, meta, inp, _ = _entry(raw)
    if meta:
        meta = {k: v for k, v in meta.items() if v is not None} or None
    problem = name_problem(item_id)
    if problem:
        ctx.problems.append(rows.problem(line, "id", f"item id: {problem}"))
        return None
    if inp is not None and not isinstance(inp, str):
        ctx.problems.append(rows.problem(line, "input", "input must be a path string"))
        inp = None
    return Item(item_id, meta, inp, (rows, line))


def _csv_rows(text: str, rows_file: RowFile) -> Iterator[tuple[int, dict | Problem]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        yield 1, rows_file.problem(1, "", "the CSV file is empty: it needs a header row with an 'id' column")
        return
    except csv.Error as exc:
        yield 1, rows_file.problem(1, "", f"invalid CSV: {exc}")
        return
    if "id" not in header:
        yield 1, rows_file.problem(1, "", f"the header row has no 'id' column (columns: {', '.join(header)})")
        return
    try:
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield line, rows_file.problem(line, "", f"{len(row)} cells, but the header has {len(header)}",
                                              column=min(len(row), len(header)) + 1)
                continue
            yield line, {name: cell(value) if name != "id" else value for name, value in zip(header, row)}
    except csv.Error as exc:
        yield reader.line_num, rows_file.problem(reader.line_num, "", f"invalid CSV: {exc}")


def _jsonl_rows(text: str, rows_file: RowFile) -> Iterator[tuple[int, dict | Problem]]:
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row, end = decoder.raw_decode(line, len(line) - len(line.lstrip()))
            if line[end:].strip():
                raise json.JSONDecodeError("extra data after the object", line, end)
        except json.JSONDecodeError as exc:
            yield number, rows_file.problem(number, "", f"invalid JSON: {exc.msg}", column=exc.colno)
        except RecursionError:
            yield number, rows_file.problem(number, "", "invalid JSON: nested too deeply")
        else:
            if isinstance(row, dict):
                yield number, row
            else:
                yield number, rows_file.problem(number, "", f"each line must be a JSON object with an \"id\", not "
                                                            f"{type(row).__name__}")


def _rows(kind: str, reader: Callable[[str, RowFile], Iterator[tuple[int, dict | Problem]]]):
    def source(value: Any, ctx: Context, budget: _Budget) -> list[Item]:
        found = _rows_file(value, kind, ctx)
        if found is None:
            return []
        path, text = found
        rows_file = RowFile(str(path), _columns(text) if kind == "csv" else {})
        items = []
        for line, row in reader(text, rows_file):
            if isinstance(row, Problem):
                ctx.problems.append(row)
            elif not budget.take():
                ctx.problems.append(rows_file.problem(line, "", budget.message()))
                break
            else:
                item = _row_item(rows_file, line, row, ctx)
                if item is not None:
                    items.append(item)
        return items
    return source


def _columns(text: str) -> dict[str, int]:
    try:
        header = next(csv.reader(io.StringIO(text[:text.find("\n") + 1 or len(text)])))
    except (StopIteration, csv.Error):
        return {}
    return {name: index for index, name in enumerate(header, 1)}


SOURCES: dict[str, Callable[[Any, Context, _Budget], list[Item]]] = {
    "range": _range, "csv": _rows("csv", _csv_rows), "jsonl": _rows("jsonl", _jsonl_rows)}


def _from_metadata(metadata: dict[str, dict[str, Any]] | None, ctx: Context, budget: _Budget) -> list[Item]:
    if metadata is None:
        ctx.report(("items_from",), "items_from: metadata needs a 'metadata' source")
        return []
    if not budget.take(len(metadata)):
        ctx.report(("metadata",), budget.message())
        return []
    items = []
    for item_id, row in metadata.items():
        problem = name_problem(item_id)
        if problem:
            ctx.report(("metadata",), f"item id from the metadata source: {problem}")
            continue
        inp = row.pop("input", None)
        items.append(Item(item_id, row or None, inp if isinstance(inp, str) else None, ("items_from",)))
    return items


def _source(source: Any, metadata: dict | None, ctx: Context, budget: _Budget) -> list[Item]:
    if source == "metadata":
        return _from_metadata(metadata, ctx, budget)
    if not isinstance(source, dict) or len(source) != 1:
        ctx.report(("items_from",), "items_from must be 'metadata' or one source, e.g. {range: {...}}")
        return []
    kind, value = next(iter(source.items()))
    if kind not in SOURCES:
        ctx.report(("items_from", kind), f"unknown item source {kind!r} (known: {', '.join(SOURCES)}, metadata)")
        return []
    return SOURCES[kind](value, ctx, budget)


def _with_metadata(items: list[Item], metadata: Mapping[str, Mapping[str, Any]]) -> list[Item]:
    """Items listed in the file take their fields from the metadata source (the file's win)."""
    merged = []
    for item in items:
        row = metadata.get(item.id)
        if row:
            meta = {**{k: v for k, v in row.items() if k != "input"}, **dict(item.meta or {})}
            item = Item(item.id, meta or None, item.input, item.where)
        merged.append(item)
    return merged


def parse_items(data: Mapping[str, Any], ctx: Context, metadata: dict[str, dict[str, Any]] | None = None) -> list[Item]:
    """The items of a session file, from ``items`` and/or ``items_from``, with their metadata."""
    budget = _Budget(ctx.extra["limits"])
    items = _inline(data["items"], ctx, budget) if data.get("items") is not None else []
    if data.get("items_from") is not None:
        items.extend(_source(data["items_from"], metadata, ctx, budget))
        if data["items_from"] == "metadata":
            metadata = None  # these items already carry their rows
    return _with_metadata(items, metadata) if metadata else items
