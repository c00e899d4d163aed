"""Item metadata from outside the session file: a small database the file points at.

SQLite is built in::

    metadata:
      sqlite: data/vineyard.db            # relative to the session file
      query: "SELECT row AS id, vines FROM rows WHERE block = 9"
      id: id                              # the column holding the item id (default: id)
    items_from: metadata                   # every row is an item (or list items and use the
                                           # metadata only for their fields)

A site adds its own source with :func:`register_source`, or with an entry point in the group
``symphony.metadata`` (name -> ``module:function``). A source returns ``{item id: {field: value}}``
and reports problems instead of raising.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .limits import LIMITS
from .problems import Problem
from .yamlfile import Locator

# (config, base directory, locator, problems) -> {item id: metadata}
Source = Callable[[Mapping[str, Any], Path, Locator, list], dict[str, dict[str, Any]]]
_SOURCES: dict[str, Source] = {}


def register_source(name: str, source: Source) -> None:
    _SOURCES[name] = source


def _entry_point_sources() -> dict[str, Source]:
    try:
        from importlib.metadata import entry_points

        found = {}
        for ep in entry_points(group="symphony.metadata"):
            try:
                found[ep.name] = ep.load()
            except Exception:  # a broken plugin must not break verification of other files
                continue
        return found
    except Exception:  # pragma: no cover
        return {}


def sources() -> dict[str, Source]:
    return {**_entry_point_sources(), **_SOURCES}


def sqlite_source(config: Mapping[str, Any], base: Path, loc: Locator, problems: list[Problem]) -> dict[str, dict]:
    path_value, query = config.get("sqlite"), config.get("query")
    id_column = config.get("id", "id")
    if not isinstance(path_value, str) or not path_value:
        problems.append(loc.problem(("metadata", "sqlite"), "sqlite must be the path of a database file"))
        return {}
    path = Path(path_value) if Path(path_value).is_absolute() else base / path_value
    if not path.is_file():
        problems.append(loc.problem(("metadata", "sqlite"), f"database {path_value!r} not found (looked at {path})"))
        return {}
    if not isinstance(query, str) or not query.strip().lower().startswith(("select", "with")):
        problems.append(loc.problem(("metadata", "query"), "query must be a SELECT statement"))
        return {}
    try:
        # read-only: verification must never change the database
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        problems.append(loc.problem(("metadata", "sqlite"), f"cannot open {path_value!r}: {exc}"))
        return {}
    deadline = time.monotonic() + LIMITS.query_s
    # a query that runs away (a recursive CTE without end) is stopped, not waited for
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        return _rows(conn.execute(query), id_column, loc, problems)
    except sqlite3.Error as exc:
        late = time.monotonic() > deadline
        problems.append(loc.problem(("metadata", "query"), f"query stopped after {LIMITS.query_s:.0f} s, the limit"
                                    if late else f"query failed: {exc}"))
        return {}
    finally:
        conn.close()


def _rows(cursor: sqlite3.Cursor, id_column: str, loc: Locator, problems: list[Problem]) -> dict[str, dict]:
    columns = [d[0] for d in cursor.description or ()]
    if id_column not in columns:
        problems.append(loc.problem(("metadata", "query"),
                                    f"the query returns no {id_column!r} column (columns: {', '.join(columns)})"))
        return {}
    index = columns.index(id_column)
    rows: dict[str, dict[str, Any]] = {}
    for row in cursor:
        item = row[index]
        if item is None:
            continue
        rows[str(item)] = {c: v for c, v in zip(columns, row) if c != id_column}
        if len(rows) > LIMITS.items:
            problems.append(loc.problem(("metadata", "query"), f"the query returns more than {LIMITS.items:,} rows, "
                                                               "the limit of items per session"))
            return {}
    return rows


register_source("sqlite", sqlite_source)


def load_metadata(config: Any, base: Path, loc: Locator, problems: list[Problem]) -> dict[str, dict[str, Any]] | None:
    """Rows of the metadata source named in ``config`` (None when there is no source)."""
    if config is None:
        return None
    if not isinstance(config, dict):
        problems.append(loc.problem(("metadata",), "metadata must be a mapping, e.g. {sqlite: FILE, query: SELECT ...}"))
        return None
    available = sources()
    kinds = [k for k in config if k in available]
    if len(kinds) != 1:
        problems.append(loc.problem(("metadata",), "metadata needs exactly one source "
                                                   f"(known: {', '.join(sorted(available))})"))
        return None
    return available[kinds[0]](config, base, loc, problems)
