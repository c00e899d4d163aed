"""The import contracts (pyproject.toml [tool.importlinter]) hold: engine has no UI, workers are
headless, the CLI never imports Textual, and only the engine's public API is used."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def lint_imports() -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_cli_does_not_load_textual():
    code = "import sys, symphony.console.commands.main; assert 'textual' not in sys.modules, 'textual imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
