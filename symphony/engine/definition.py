"""What differs between a session's registered definition and its file, and whether the
registered one may be replaced while the session runs (``symphony update``).

A change is *compatible* when the stages stay the same (the same names in the same order, each in
the same pool, writing the same outputs): then every task already queued, retrying or recorded
still means the same thing, and only how a stage runs changes: its handler or command, timeout,
attempts, backoff, parameters, descriptions. The data root, the items' input template, a
stage's pool, output template or aliases decide where tasks are queued and what counts as done,
so changing them needs a new session (or ``symphony purge`` and ``initialize`` again).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from symphony.spec import SessionRecord

# fields of a stage and of a session whose change would give existing tasks another meaning
FIXED_STAGE_FIELDS = {
    "pool": "the pool decides which workers serve the stage",
    "output": "the output template decides what counts as done",
    "aliases": "aliases route tasks to the stage",
}
FIXED_SESSION_FIELDS = {
    "root": "the data root decides where every output is",
    "input": "the input template decides what the first stage reads",
}
STAGES_FIXED = "the stages (their names and order) must stay the same"
VALUE_WIDTH = 100


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 3] + "..."


@dataclass(frozen=True)
class Change:
    """One field that differs: where, the registered value, the file's value."""

    path: str  # e.g. "stages.detection.command", "params.detection.seconds", "root"
    old: Any
    new: Any
    allowed: bool = True
    why: str = ""  # for a change that is not allowed: what it would break

    def __str__(self) -> str:
        text = f"{self.path}: {_show(self.old)} -> {_show(self.new)}"
        return text if self.allowed else f"{text} (not allowed: {self.why})"


@dataclass(frozen=True)
class Comparison:
    """Every difference between two definitions of one session."""

    changes: tuple[Change, ...] = ()

    @property
    def same(self) -> bool:
        return not self.changes

    @property
    def blockers(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.allowed)

    @property
    def compatible(self) -> bool:
        return not self.blockers

    def summary(self, limit: int = 3) -> str:
        """The first ``limit`` changes on one line, and how many more there are."""
        shown = "; ".join(str(c) for c in self.changes[:limit])
        more = len(self.changes) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


def _leaves(prefix: str, value: Any) -> dict[str, Any]:
    """Parameters flattened to ``prefix.key`` leaves (other values are leaves themselves)."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_leaves(f"{prefix}.{key}", inner))
        return out
    return {prefix: value if not (isinstance(value, Mapping)) else None}


def _compare_fields(prefix: str, old: Mapping[str, Any], new: Mapping[str, Any],
                    fixed: Mapping[str, str]) -> list[Change]:
    changes = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if key == "params":
            o, n = _leaves(path, old.get(key) or {}), _leaves(path, new.get(key) or {})
            changes += [Change(p, o.get(p), n.get(p)) for p in sorted(set(o) | set(n)) if o.get(p) != n.get(p)]
        elif old.get(key) != new.get(key):
            why = fixed.get(key, "")
            changes.append(Change(path, old.get(key), new.get(key), allowed=not why, why=why))
    return changes


def compare_definitions(old: SessionRecord, new: SessionRecord) -> Comparison:
    """The changes from the registered definition ``old`` to ``new`` (the file as it is now)."""
    a, b = old.to_dict(), new.to_dict()
    pa, pb = a.pop("pipeline"), b.pop("pipeline")
    a.pop("name", None), b.pop("name", None)
    changes = _compare_fields("", a, b, FIXED_SESSION_FIELDS)
    if pa.get("pipeline") != pb.get("pipeline"):
        changes.append(Change("pipeline", pa.get("pipeline"), pb.get("pipeline")))
    if pa.get("description") != pb.get("description"):
        changes.append(Change("pipeline.description", pa.get("description"), pb.get("description")))
    old_stages = [s["name"] for s in pa["stages"]]
    new_stages = [s["name"] for s in pb["stages"]]
    if old_stages != new_stages:
        changes.append(Change("stages", old_stages, new_stages, allowed=False, why=STAGES_FIXED))
    else:
        for so, sn in zip(pa["stages"], pb["stages"]):
            changes += _compare_fields(f"stages.{so['name']}.", so, sn, FIXED_STAGE_FIELDS)
    return Comparison(tuple(changes))
