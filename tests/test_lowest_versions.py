"""The declared minimums are true: a fresh venv on the lowest declared Python (when this machine has
it) with the lowest declared version of every dependency (and of the ``azure`` extra) runs the
CLI, a worker draining a small session, the console's headless screenshot and one Azure Monitor
poll, against a real Redis."""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT, sample_tasks

pytestmark = pytest.mark.slow
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(;.*)?$")


def declared() -> tuple[str, list[str]]:
    """(the lowest declared Python, the requirements of the package and its azure extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = re.match(r">=\s*(\d+\.\d+)", project["requires-python"]).group(1)
    return python, list(project["dependencies"]) + list(project["optional-dependencies"]["azure"])


def lower_bounds(requirements: list[str]) -> dict[str, str]:
    bounds = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        assert match, f"{requirement!r} declares no lower bound (name>=version)"
        bounds[match.group(1).lower()] = match.group(3)
    return bounds


def _release(version: str) -> tuple[int, ...]:
    """``5.0`` and ``5.0.0`` alike."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def lowest_python(version: str) -> str:
    """An interpreter of ``version`` on this machine (PATH or pyenv), else this one."""
    candidates = [f"python{version}"] + sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for exe in candidates:
        try:
            out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return exe
    return sys.executable


@pytest.fixture(scope="module")
def lowest(tmp_path_factory) -> Path:
    python_version, requirements = declared()
    bounds = lower_bounds(requirements)
    reach = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                            str(tmp_path_factory.mktemp("probe")), "redis==" + bounds["redis"]],
                           capture_output=True, text=True, timeout=300)
    if reach.returncode != 0:
        pytest.skip("the package index is not reachable: the lowest versions cannot be installed")
    target = tmp_path_factory.mktemp("lowest")
    python = lowest_python(python_version)
    if python == sys.executable:
        venv.create(target, with_pip=True)
    else:
        subprocess.run([python, "-m", "venv", str(target)], check=True, timeout=300)
    constraints = target / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in bounds.items()))
    install = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--only-binary=:all:",
                              "-c", str(constraints), *requirements], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, "the lowest declared versions do not install together:\n" + install.stderr[-4000:]
    listed = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120, check=True)
    got = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    for name, version in bounds.items():
        assert _release(got.get(name, "0")) == _release(version), \
            f"{name}: installed {got.get(name)}, declared minimum {version}"
    return target


def _run(target: Path, redis_url: str, *argv: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SYMPHONY_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    return subprocess.run([str(target / "bin" / "python"), *argv], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_lowest_declared_versions_run_the_cli_a_worker_the_console_and_the_collector(lowest, redis_url, tmp_path):
    tasks = sample_tasks(tmp_path, seconds=0.0)
    version = _run(lowest, redis_url, "-c", "import sys, redis, textual; print(sys.version_info[:2], redis.__version__)",
                   cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    status = _run(lowest, redis_url, "-m", "symphony", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    init = _run(lowest, redis_url, "-m", "symphony", "initialize", str(tasks / "block7.yaml"), cwd=tmp_path)
    assert init.returncode == 0 and "24 item(s) enqueued" in init.stdout, init.stderr
    worker = _run(lowest, redis_url, "-m", "symphony.workers", "--burst", "-n", "2", "--heartbeat", "0.5", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr[-3000:]
    sessions = json.loads(_run(lowest, redis_url, "-m", "symphony", "sessions", "--json", cwd=tmp_path).stdout)
    assert sessions[0]["completed"] == 24, sessions
    shot = tmp_path / "shot.svg"
    tui = _run(lowest, redis_url, "-m", "symphony.console.tui_main", "--screenshot", str(shot), "--screenshot-after", "1",
               cwd=tmp_path)
    assert tui.returncode == 0 and shot.read_text().startswith("<svg"), tui.stderr[-3000:]
    poll = ("import time\n"
            "from symphony.azure.monitor import AzureCollector, AzureMonitorConfig\n"
            "from symphony.engine import Engine\n"
            "from tests.azure_fake import RG, SUB, AzureFake, FakeCredential, standard, transport_for\n"
            "collector = AzureCollector(Engine(), AzureMonitorConfig(subscription=SUB, resource_group=RG),\n"
            "                           credential=FakeCredential(), transport=transport_for(standard(AzureFake())),\n"
            "                           clock=time.time)\n"
            "result = collector.run(once=True)\n"
            "assert result.ok and result.written, result.problems\n")
    collect = _run(lowest, redis_url, "-c", poll, cwd=tmp_path)
    assert collect.returncode == 0, collect.stderr[-3000:]
    show = json.loads(_run(lowest, redis_url, "-m", "symphony", "metrics", "show", "--json", cwd=tmp_path).stdout)
    assert {s["source"] for s in show["scale_sets"]} == {"azure monitor"}
