"""The engine's shape: one ordered public API without names only tests use, no dead code, every
script named has a file, and states compared as enums, not strings."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import symphony.engine as engine
from symphony.engine import scripts

ROOT = Path(__file__).resolve().parents[1] / "symphony"
LUA = ROOT / "engine" / "lua"


def test_every_script_named_has_a_file_and_every_file_is_named():
    files = {p.stem for p in LUA.glob("*.lua") if not p.stem.startswith("_")}
    assert set(scripts.NAMES) == files
    assert len(scripts.NAMES) == len(set(scripts.NAMES))


def test_a_script_without_a_file_is_an_error_not_skipped(monkeypatch):
    monkeypatch.setattr(scripts, "NAMES", (*scripts.NAMES, "no_such_script"))
    with pytest.raises(FileNotFoundError):
        scripts.Scripts()


def test_the_public_api_is_one_list_of_distinct_names_that_all_exist():
    assert len(engine.__all__) == len(set(engine.__all__))
    for name in engine.__all__:
        assert hasattr(engine, name), name
    imported = {a.asname or a.name for node in ast.parse((ROOT / "engine" / "__init__.py").read_text()).body
                if isinstance(node, ast.ImportFrom) for a in node.names}
    assert imported == set(engine.__all__)


@pytest.mark.parametrize("name", ["DONE", "RETRY", "HANDBACK", "FAILED", "TIMED_OUT", "CANCELLED", "HostStatus",
                                  "hosts_from_workers", "Failure", "decode_task", "InvalidMessage", "free_port",
                                  "name_problem", "redact_url"])
def test_names_only_tests_used_are_not_exported(name):
    assert not hasattr(engine, name)


def test_dead_code_is_gone():
    from symphony.engine import embedded, metrics, reclaim, records

    assert not hasattr(records.RecordCache, "state")
    assert not hasattr(embedded.EmbeddedRedis, "restart")
    assert not hasattr(metrics, "HostStatus") and not hasattr(metrics, "hosts_from_workers")
    assert not hasattr(reclaim, "describe")


# The Azure collector's states are its own (ok, degraded, error).
NOT_HERE = {"azure_monitor.py"}
STATE_WORDS = {"active", "cancelled", "complete", "done", "retry", "handback", "failed", "timed_out"}


def _compared_literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                for value in values:
                    if isinstance(value, ast.Constant) and value.value in STATE_WORDS:
                        yield node.lineno, value.value


def test_states_are_compared_as_enums_not_strings():
    modules = [p for p in (ROOT / "engine").glob("*.py") if p.name not in NOT_HERE]
    modules += list((ROOT / "workers").rglob("*.py")) + list((ROOT / "console").rglob("*.py"))
    found = [f"{p.relative_to(ROOT)}:{line} {word!r}" for p in modules for line, word in _compared_literals(p)]
    assert found == [], "use OutcomeKind / SessionState: " + ", ".join(found)
