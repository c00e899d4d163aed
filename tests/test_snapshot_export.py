"""Export of a status snapshot belongs to the engine: ``Snapshot.write(path)`` writes atomically
and returns where; ``symphony status --export`` and the console's ``e`` key both call it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from symphony.engine import Snapshot

CONSOLE = Path(__file__).resolve().parents[1] / "symphony" / "console"


def test_write_is_atomic_and_returns_the_absolute_path(engine, tmp_path, monkeypatch):
    snap = engine.snapshot()
    monkeypatch.chdir(tmp_path)
    written = snap.write("out/deeper/snap.json")  # a relative path, in a folder that does not exist yet
    assert written == str(tmp_path / "out" / "deeper" / "snap.json")
    assert json.loads(Path(written).read_text()) == json.loads(snap.to_json())
    # a write that fails half-way leaves the previous file whole, and no temporary file behind
    monkeypatch.setattr(Snapshot, "to_json", lambda self, indent=2: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        snap.write(written)
    assert json.loads(Path(written).read_text())["schema"] == 1
    assert sorted(p.name for p in Path(written).parent.iterdir()) == ["snap.json"]


def test_status_export_writes_through_the_engine(cli, tmp_path, monkeypatch):
    calls = []
    original = Snapshot.write

    def recording(self, path):
        calls.append(path)
        return original(self, path)

    monkeypatch.setattr(Snapshot, "write", recording)
    code, out, _ = cli("status", "--export", str(tmp_path / "s.json"))
    assert code == 0 and calls == [str(tmp_path / "s.json")] and f"snapshot written to {tmp_path / 's.json'}" in out


def test_the_textual_console_does_not_import_cli_verbs():
    """The console's ``e`` key exports through the engine, not through a module of the CLI."""
    for path in CONSOLE.rglob("*.py"):
        if "commands" in path.relative_to(CONSOLE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert "commands" not in module.split("."), f"{path} imports {module}"
    assert any("snapshot.write(" in p.read_text() for p in CONSOLE.glob("*.py"))
