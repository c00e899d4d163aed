"""Editing a session's files after initialize: retry warns, initialize --resume says what differs,
``symphony update`` shows the differences, asks and applies a compatible change (which the next
attempts run); and an interrupted initialize says what it left and how to finish."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from symphony.engine import compare_definitions, load_session
from tests.helpers import ROOT, WorkerRun, wait_until, worker_env, write_pipeline, write_session

FAIL = ["{python}", "-c", "import sys; sys.exit(3)"]
FIXED = ["{python}", "-c", "import sys; open(sys.argv[1], 'w').write('ok')", "{output}"]


def default_sigint() -> None:
    """Ctrl-C as a terminal delivers it, whatever this test process does with SIGINT (a child
    that starts with SIGINT ignored never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stage(name: str, command: list[str], **extra) -> dict:
    return {"name": name, "pool": "p", "command": command, "output": "{root}/{session}/{stage}/{item}.txt",
            "max_attempts": 1, "retry_backoff": 0, **extra}


def session(tmp_path: Path, command: list[str] = FAIL, **extra) -> Path:
    write_pipeline(tmp_path / "pipe.yaml", [stage("work", command, **extra), stage("after", FIXED)])
    return write_session(tmp_path / "edit.yaml", "edit", "pipe.yaml", ["a", "b"], root=str(tmp_path / "data"))


def edit_stage(tmp_path: Path, **changes) -> None:
    path = tmp_path / "pipe.yaml"
    data = yaml.safe_load(path.read_text())
    data["stages"][0].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_compare_definitions_names_each_change_and_what_is_not_allowed(tmp_path):
    old = load_session(session(tmp_path)).record()
    edit_stage(tmp_path, command=FIXED, timeout=99, params={"level": 2})
    new = load_session(tmp_path / "edit.yaml").record()
    comparison = compare_definitions(old, new)
    paths = {c.path: c for c in comparison.changes}
    assert set(paths) == {"stages.work.command", "stages.work.timeout", "stages.work.params.level"}
    assert comparison.compatible and paths["stages.work.params.level"].new == 2
    assert "stages.work.timeout: 3600.0 -> 99.0" in comparison.summary()
    edit_stage(tmp_path, output="{root}/elsewhere/{item}.txt", pool="q")
    moved = compare_definitions(old, load_session(tmp_path / "edit.yaml").record())
    assert {c.path for c in moved.blockers} == {"stages.work.output", "stages.work.pool"}
    data = yaml.safe_load((tmp_path / "pipe.yaml").read_text())
    data["stages"].reverse()
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(data))
    reordered = compare_definitions(old, load_session(tmp_path / "edit.yaml").record())
    assert [c.path for c in reordered.blockers] == ["stages"]
    assert compare_definitions(old, old).same


@pytest.mark.slow
def test_a_fixed_command_is_applied_with_update_and_retried(cli, r, engine, redis_url, tmp_path, monkeypatch):
    path = session(tmp_path)
    assert cli("initialize", str(path))[0] == 0
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(120) == 0
    assert r.hget(K.stats("edit"), "work|failed") == "2"

    edit_stage(tmp_path, command=FIXED)
    # retry says that the file differs, and still retries with what is registered
    code, out, err = cli("retry", "edit")
    assert code == 0 and "2 task(s) back" in out
    assert "differs from the definition session edit runs" in err and "stages.work.command" in err
    assert "symphony update edit" in err
    # initialize --resume refuses the file and says what differs
    code, out, err = cli("initialize", "--resume", str(path))
    assert code == 1 and "stages.work.command" in err and "symphony update edit" in err
    # update: the differences first; nothing without an answer, nothing with --dry-run
    before = r.hget(K.session("edit"), "fingerprint")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, out, err = cli("update", "edit")
    assert code == 1 and "stages.work.command" in out and "Refusing without --yes" in err
    code, out, _ = cli("update", "edit", "--dry-run")
    assert code == 0 and "nothing updated (--dry-run)" in out
    assert r.hget(K.session("edit"), "fingerprint") == before
    epoch = r.get(K.epoch)
    code, out, err = cli("update", "edit", "--yes")
    assert code == 0 and "definition updated" in out, err
    assert r.hget(K.session("edit"), "fingerprint") != before and r.get(K.epoch) != epoch
    assert engine.session("edit")[0].pipeline.stage("work").handler.argv == tuple(FIXED)
    assert cli("update", "edit")[1].endswith("nothing to update\n")
    assert "differs" not in cli("sessions")[2]

    # the two tasks retried above were waiting: they run the new command
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(120) == 0
    assert r.hget(K.stats("edit"), "after|completed") == "2"
    assert (tmp_path / "data" / "edit" / "after" / "a.txt").read_text() == "ok"
    code, out, err = cli("retry", "edit")
    assert code == 0 and "no failed tasks" in out and "differs" not in err


def test_update_refuses_an_incompatible_change_and_changes_nothing(cli, r, tmp_path):
    path = session(tmp_path)
    assert cli("initialize", str(path))[0] == 0
    before = r.hgetall(K.session("edit"))
    edit_stage(tmp_path, name="renamed")
    code, out, err = cli("update", "edit", "--yes")
    assert code == 2 and "stages:" in out and "must stay the same" in err and "nothing was updated" in err
    edit_stage(tmp_path, name="work", output="{root}/x/{item}.txt")
    code, out, err = cli("update", "edit", "--yes", "--json")
    assert code == 2 and json.loads(out)["changes"][0]["path"] == "stages.work.output"
    assert r.hgetall(K.session("edit")) == before


def test_update_verifies_the_file_first(cli, r, tmp_path):
    path = session(tmp_path)
    assert cli("initialize", str(path))[0] == 0
    before = r.hgetall(K.session("edit"))
    edit_stage(tmp_path, timeout=-1)
    code, out, err = cli("update", "edit", "--yes")
    assert code == 1 and "pipe.yaml" in err and "timeout" in err and "unchanged" in err
    assert r.hgetall(K.session("edit")) == before
    assert cli("update", "nosuch")[0] == 2


@pytest.mark.slow
def test_ctrl_c_while_enqueueing_says_what_is_left_and_resume_finishes(redis_url, r, tmp_path):
    items = 300_000
    path = write_session(tmp_path / "big.yaml", "big", "pipe.yaml", root=str(tmp_path / "data"),
                         items_from={"range": {"prefix": "i-", "start": 1, "count": items}})
    write_pipeline(tmp_path / "pipe.yaml", [stage("work", FIXED)])
    env = {**worker_env(redis_url), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "symphony", "initialize", str(path)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        wait_until(lambda: int(r.hget(K.stats("big"), "work|enqueued") or 0) > 0, timeout=120,
                   message="the first items to be enqueued")
        r.execute_command("CLIENT", "PAUSE", "20000", "WRITE")  # the enqueue now waits: Ctrl-C lands inside it
        proc.send_signal(signal.SIGINT)
        r.execute_command("CLIENT", "UNPAUSE")  # so that it can read what it left
        wait_until(lambda: proc.poll() is not None, timeout=60, message="initialize to stop")
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    queued = r.llen(K.queue("work", "big"))
    assert 0 < queued < items
    assert "interrupted while enqueueing session big" in err and f"of its {items:,} items" in err
    assert f"symphony initialize --resume {path}" in err and "symphony purge big" in err
    resume = subprocess.run([sys.executable, "-m", "symphony", "initialize", "--resume", str(path)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    assert r.llen(K.queue("work", "big")) == items and r.hlen(K.live("big")) == items


def test_ctrl_c_while_verifying_says_nothing_changed(redis_url, r, tmp_path):
    path = write_session(tmp_path / "big.yaml", "big", "pipe.yaml", root=str(tmp_path / "data"),
                         items_from={"range": {"prefix": "i-", "start": 1, "count": 10}})
    write_pipeline(tmp_path / "pipe.yaml", [stage("work", FIXED)])
    (tmp_path / "sitecheck.py").write_text("import os, signal\ndef check(spec):\n"
                                           "    os.kill(os.getpid(), signal.SIGINT)\n    return []\n")
    data = yaml.safe_load(path.read_text())
    data["checks"] = ["sitecheck:check"]
    path.write_text(yaml.safe_dump(data))
    env = {**worker_env(redis_url), "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    run = subprocess.run([sys.executable, "-m", "symphony", "initialize", str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, preexec_fn=default_sigint)
    assert run.returncode == 130 and "interrupted while verifying; nothing was registered or enqueued" in run.stderr
    assert not r.exists(K.session("big")) and r.llen(K.queue("work", "big")) == 0
