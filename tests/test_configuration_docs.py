"""docs/configuration.md lists every environment variable the code reads or gives handlers, and
the packaging metadata says what is true."""
from __future__ import annotations

import ast
import re

import pytest

from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

DOC = ROOT / "docs" / "configuration.md"
# names Symphony gives its variables, and the Redis, Azure and SLURM conventions it follows
VARIABLE = re.compile(r"^(SYMPHONY|REDIS|AZURE|BENCH|SLURM)_[A-Z][A-Z0-9_]*$")
TREES = ("symphony", "bench", "tests")


def _environ_reads(tree: ast.AST) -> set[str]:
    """Literal names read with ``os.environ.get(...)``, ``os.environ[...]`` or ``os.getenv(...)``."""
    found = set()
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = node.func.value
            if (node.func.attr == "get" and isinstance(owner, ast.Attribute) and owner.attr == "environ") or \
                    node.func.attr == "getenv":
                target = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
            target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            found.add(target.value)
    return found


def _variable_literals(tree: ast.AST) -> set[str]:
    """Every string constant shaped like one of our variables (kept in tuples and constants before
    they are read), except the names listed in ``__all__``."""
    exported = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                exported |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and VARIABLE.match(n.value)} - exported


def variables_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for top in TREES:
        for path in sorted((ROOT / top).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for name in _environ_reads(tree) | _variable_literals(tree):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def documented() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", DOC.read_text(encoding="utf-8")))


def test_every_environment_variable_the_code_reads_is_in_the_table():
    found = variables_in_code()
    assert {"SYMPHONY_REDIS_URL", "SYMPHONY_AZURE_REGION", "SYMPHONY_KEY_FILE", "SYMPHONY_REDIS_SERVER"} <= set(found)
    missing = {name: where for name, where in found.items() if name not in documented()}
    assert not missing, f"read by the code but not in docs/configuration.md: {missing}"


def test_the_variables_given_to_handlers_are_in_the_table():
    source = (ROOT / "symphony" / "workers" / "dispatch.py").read_text()
    given = set(re.findall(r'"(SYMPHONY_[A-Z_]+)":', source))
    assert given == {"SYMPHONY_SESSION", "SYMPHONY_STAGE", "SYMPHONY_ITEM", "SYMPHONY_ATTEMPT", "SYMPHONY_ITEM_INPUT"}
    assert given <= documented()


def test_the_readme_links_the_configuration_page():
    assert "docs/configuration.md" in (ROOT / "README.md").read_text()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_license_is_an_spdx_expression_not_the_deprecated_table():
    assert isinstance(_project()["license"], str)


# the import name of each test dependency (a plugin counts by the fixture or option it provides)
TEST_DEPENDENCY_USE = {"pytest": "import pytest", "pytest-timeout": "timeout", "import-linter": "importlinter",
                       "hypothesis": "from hypothesis", "pytest-textual-snapshot": "snap_compare",
                       "azure-identity": "azure.identity", "azure-monitor-querymetrics": "azure.monitor.querymetrics",
                       "azure-mgmt-compute": "azure.mgmt.compute",
                       "requests": "import requests", "textual-serve": "textual_serve", "radon": "radon.complexity",
                       "azure-storage-blob": "azure.storage.blob", "azure-storage-queue": "azure.storage.queue",
                       "fsspec": "import fsspec", "adlfs": "abfs://"}


def test_every_test_dependency_is_used():
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in _project()["optional-dependencies"]["test"]]
    sources = "\n".join(p.read_text(encoding="utf-8") for top in ("tests", "symphony")
                        for p in (ROOT / top).rglob("*.py")) + (ROOT / "pyproject.toml").read_text()
    unused = [n for n in names if n not in TEST_DEPENDENCY_USE or TEST_DEPENDENCY_USE[n] not in sources]
    assert not unused, f"declared in the test extra but never used: {unused}"


def test_the_readmes_redis_cli_example_names_a_real_queue_of_the_sample_session():
    from symphony.engine import load_session

    spec = load_session(ROOT / "tasks" / "block7.yaml")
    queue = f"{spec.pipeline.stages[0].name}:{spec.name}"
    named = re.findall(r"`(?:LLEN|LRANGE) ([^ `]+)", (ROOT / "README.md").read_text())
    assert named and set(named) == {queue}, named
