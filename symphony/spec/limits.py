"""The bounds of what verification reads, so that no file can make it run for minutes or fill memory.

A file past a limit is a problem naming that file, found before the work it would cost: the
size before the file is read, aliases, nesting and node counts while the YAML is scanned (a
pass of the C parser, before anything is built), items as they are counted.
"""
from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    # A session file may be this large when its items are written one per line (the fast form,
    # ``- {id: row-1, vines: 38}``): about 2,000,000 such items.
    session_bytes: int = 64 * MiB
    # Any other YAML (a pipeline, a session file's other fields, items over several lines) is
    # read by PyYAML, which builds every node: at most this much of it.
    yaml_bytes: int = 8 * MiB
    # Nodes that YAML aliases may add in all (``*a`` repeats what ``&a`` names): far above any
    # use of anchors for shared defaults, far below a "billion laughs" expansion.
    alias_nodes: int = 100_000
    # Collections inside collections.
    depth: int = 64
    # Items one session may have, whatever their source (a list, a range, CSV, JSON Lines, a database).
    items: int = 2_000_000
    # A CSV or JSON Lines file of items.
    rows_bytes: int = 1024 * MiB
    # Seconds a metadata query may run.
    query_s: float = 60.0


LIMITS = Limits()
