"""The import contracts (pyproject.toml [tool.importlinter]) hold: engine has no UI, workers are
headless, the CLI never imports Textual, and only the engine's public API is used."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


COMPLEXITY_LIMIT = 20  # radon's cyclomatic complexity; a function above it says why in a comment
LINES_LIMIT = 500  # a module above it says why in its first lines


def _application_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "symphony").rglob("*.py") if "samples" not in p.parts)


def test_no_function_is_too_complex():
    radon = pytest.importorskip("radon.complexity", reason="radon (the test extra) is not installed")
    too_complex = []
    for path in _application_modules():
        source = path.read_text()
        lines = source.splitlines()
        for block in radon.cc_visit(source):
            if block.complexity <= COMPLEXITY_LIMIT:
                continue
            header = "\n".join(lines[max(0, block.lineno - 3):block.lineno + 1])
            if "complexity:" not in header:  # the reason, written above or in the function's first lines
                too_complex.append(f"{path.relative_to(ROOT)}:{block.lineno} {block.name} ({block.complexity})")
    assert not too_complex, "functions over cyclomatic complexity 20 without a reason: " + ", ".join(too_complex)


def test_no_module_is_too_long():
    too_long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in _application_modules()
                if (n := len(p.read_text().splitlines())) > LINES_LIMIT
                and "length:" not in "\n".join(p.read_text().splitlines()[:15])]
    assert not too_long, "modules over 500 lines without a reason at their top: " + ", ".join(too_long)
