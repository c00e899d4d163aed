"""The built wheel installs exactly one top-level import package, ``symphony``, and its three
entry points run from it (not from the checkout)."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        if "Could not find a version" in build.stderr or "No matching distribution" in build.stderr:
            pytest.skip("building the wheel needs setuptools from the package index, which is not reachable")
        raise AssertionError(build.stdout + build.stderr)
    wheels = list(out.glob("redis_symphony-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no pip of its own) with only the wheel installed into it, without its
    dependencies; those come from this test run's environment through PYTHONPATH."""
    target = tmp_path_factory.mktemp("venv")
    venv.create(target, with_pip=False)
    before = set(os.listdir(_site_packages(target)))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                    "--no-deps", "--quiet", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    added = set(os.listdir(_site_packages(target))) - before
    (target / "added.txt").write_text("\n".join(sorted(added)))
    return target


def _site_packages(target: Path) -> Path:
    rel = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return target / rel


def _run(target: Path, *argv: str) -> subprocess.CompletedProcess:
    # the dependencies from this environment; the editable install's path hook is not processed
    # from PYTHONPATH, so ``symphony`` can only come from the fresh venv's copy
    deps = sysconfig.get_path("purelib")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SYMPHONY_", "PYTHON"))}
    env["PYTHONPATH"] = deps
    return subprocess.run(list(argv), cwd=str(target), env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_adds_one_top_level_package(installed):
    added = (installed / "added.txt").read_text().split()
    names = {name for name in added if not name.endswith((".dist-info", ".pth")) and name != "__pycache__"}
    assert names == {"symphony"}, added


def test_the_entry_points_run_from_the_installed_copy(installed):
    bin_dir = installed / "bin"
    where = _run(installed, str(bin_dir / "python"), "-c", "import symphony, sys; print(symphony.__file__)")
    assert where.returncode == 0, where.stderr
    assert str(installed) in where.stdout and str(ROOT) not in where.stdout
    for exe in ("symphony", "symphony-worker", "symphony-tui"):
        out = _run(installed, str(bin_dir / exe), "--help")
        assert out.returncode == 0, out.stderr
        assert f"usage: {exe}" in out.stdout
    module = _run(installed, str(bin_dir / "python"), "-m", "symphony", "--help")
    assert module.returncode == 0 and "usage: symphony" in module.stdout, module.stderr


def test_the_lua_scripts_and_styles_are_in_the_wheel(installed):
    code = ("from symphony.engine.scripts import scripts; s = scripts(); print(s.claim.sha);"
            "from importlib import resources; print((resources.files('symphony.console') / 'app.tcss').is_file())")
    out = _run(installed, str(installed / "bin" / "python"), "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"
