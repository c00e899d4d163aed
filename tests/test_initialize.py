"""symphony initialize: verify every file first, report every problem with file, line and field,
enqueue nothing from a file with a problem, never duplicate work."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT, TASKS



@pytest.fixture
def tasks(tmp_path) -> Path:
    dest = tmp_path / "tasks"
    dest.mkdir()
    shutil.copytree(TASKS / "pipelines", dest / "pipelines")
    return dest


def session_file(tasks: Path, name: str, body: str) -> Path:
    path = tasks / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """\
    session: good
    pipeline: pipelines/scan.yaml
    root: ../data
    require: [vines]
    items:
      - {id: row-1, vines: 3}
      - {id: row-2, vines: 4}
"""


def nothing_enqueued(r, session: str) -> bool:
    return not r.exists(K.queue("rvm", session)) and not r.hexists(K.sessions, session)


@pytest.mark.parametrize("body, line, field, words", [
    ("session: bad\npipeline: pipelines/scan.yaml\nitemz: [a]\n", 3, "itemz", "unknown field 'itemz'"),
    ("session: bad\npipeline: pipelines/scan.yaml\nrequire: [vines]\nitems:\n  - {id: r1, vines: 2}\n  - {id: r2}\n",
     6, "items[1]", "has no 'vines'"),
    ("session: bad\npipeline: pipelines/scan.yaml\nrequire: {vines: positive_int}\nitems:\n  - {id: r1, vines: -3}\n",
     5, "items[0].vines", "is not positive int"),
    ("session: bad\npipeline: pipelines/scan.yaml\nitems:\n  - {id: r1, input: nowhere/r1.csv}\n",
     4, "items[0].input", "input file of item 'r1' not found"),
    ("session: bad\npipeline: pipelines/scan.yaml\nitems:\n  - r1\n  - r2\n  - r1\n", 6, "items[2]", "duplicate item id 'r1'"),
    ("session: bad\npipeline: pipelines/scan.yaml\nparams: {detect: {seconds: 1}}\nitems: [r1]\n",
     3, "params.detect", "unknown stage 'detect'"),
    ("session: bad\npipeline: pipelines/nope.yaml\nitems: [r1]\n", 2, "pipeline", "not found"),
    ("session: bad\npipeline: pipelines/scan.yaml\nroot: afile/data\nitems: [r1]\n", 3, "root", "cannot be created"),
    ("session: bad\npipeline: pipelines/scan.yaml\nmetadata: {sqlite: missing.db, query: SELECT 1}\nitems_from: metadata\n",
     3, "metadata.sqlite", "database 'missing.db' not found"),
    ("session: 'bad session'\npipeline: pipelines/scan.yaml\nitems: [r1]\n", 1, "session", "not a valid name"),
    ("session: bad\npipeline: pipelines/scan.yaml\nchecks: [tests.site_checks:rows_are_even]\nitems: [row-1, row-2]\n",
     4, "items", "row row-1 is odd (site rule)"),
])
def test_each_kind_of_bad_input_names_file_line_and_field_and_enqueues_nothing(cli, r, tasks, body, line, field, words):
    (tasks / "afile").write_text("not a directory")
    path = session_file(tasks, "bad", body)
    code, out, err = cli("initialize", str(path))
    assert code == 1
    expected = f"{path}:{line}: [{field}]"
    assert any(expected in l and words in l for l in err.splitlines()), err
    assert "nothing was enqueued" in err
    assert nothing_enqueued(r, "bad")
    assert r.dbsize() == 0


def test_handler_that_cannot_be_found_is_reported_in_the_pipeline_file(cli, r, tasks):
    (tasks / "pipelines" / "odd.yaml").write_text(
        "pipeline: odd\nstages:\n  - name: a\n    handler: no_such_module:run\n    output: '{root}/{item}.json'\n")
    path = session_file(tasks, "s", "session: s\npipeline: pipelines/odd.yaml\nitems: [r1]\n")
    code, _, err = cli("initialize", str(path))
    assert code == 1 and f"{tasks / 'pipelines' / 'odd.yaml'}:4: [stages[0].handler]" in err
    assert "no_such_module" in err and r.dbsize() == 0


def test_every_problem_is_listed_not_only_the_first(cli, r, tasks):
    path = session_file(tasks, "bad", "session: bad\npipeline: pipelines/scan.yaml\nrequire: [vines]\n"
                                      "items:\n  - r1\n  - r1\n  - {id: r3, input: none/x}\n")
    code, _, err = cli("initialize", str(path))
    assert code == 1
    assert "has no 'vines'" in err and "duplicate item id" in err and "input file of item 'r3'" in err


def test_a_bad_file_does_not_stop_the_good_ones_and_the_exit_status_says_so(cli, r, tasks):
    session_file(tasks, "good", GOOD)
    session_file(tasks, "bad", "session: bad\npipeline: pipelines/scan.yaml\nitems: [r1, r1]\n")
    code, out, err = cli("initialize", "--tasks", str(tasks))
    assert code == 1
    assert "good: 2 item(s) enqueued for rvm" in out
    assert r.llen(K.queue("rvm", "good")) == 2 and nothing_enqueued(r, "bad")


def test_dry_run_verifies_only(cli, r, tasks):
    path = session_file(tasks, "good", GOOD)
    code, out, _ = cli("initialize", "--dry-run", str(path))
    assert code == 0 and "verified (2 items)" in out and r.dbsize() == 0


def test_an_active_session_is_refused_unless_resumed_and_never_duplicated(cli, r, tasks):
    path = session_file(tasks, "good", GOOD)
    assert cli("initialize", str(path))[0] == 0
    code, _, err = cli("initialize", str(path))
    assert code == 1 and "already active; use --resume" in err
    code, out, _ = cli("initialize", "--resume", str(path))
    assert code == 0 and "0 item(s) enqueued for rvm, 2 already queued or in flight" in out
    assert r.llen(K.queue("rvm", "good")) == 2


def test_a_queue_name_clash_is_refused(cli, r, tasks):
    r.set(K.queue("rvm", "good"), "another tool's value")
    code, _, err = cli("initialize", str(session_file(tasks, "good", GOOD)))
    assert code == 1 and "queue name clash" in err and K.queue("rvm", "good") in err


def test_the_same_session_name_in_two_files_is_refused(cli, r, tasks):
    session_file(tasks, "one", GOOD)
    session_file(tasks, "two", GOOD)
    code, _, err = cli("initialize", "--tasks", str(tasks))
    assert code == 1 and "is also defined in" in err


def test_metadata_from_sqlite(cli, r, tasks):
    db = tasks / "rows.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE rows (row TEXT, vines INTEGER)")
        conn.executemany("INSERT INTO rows VALUES (?, ?)", [("r1", 5), ("r2", 7), ("r3", None)])
    body = ("session: db\npipeline: pipelines/scan.yaml\nrequire: {vines: positive_int}\n"
            "metadata: {sqlite: rows.db, query: 'SELECT row AS id, vines FROM rows'}\nitems_from: metadata\n")
    code, _, err = cli("initialize", str(session_file(tasks, "db", body)))
    assert code == 1 and "item 'r3' has no 'vines'" in err and nothing_enqueued(r, "db")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE rows SET vines = 9 WHERE row = 'r3'")
    assert cli("initialize", str(tasks / "db.yaml"))[0] == 0
    messages = [json.loads(m) for m in r.lrange(K.queue("rvm", "db"), 0, -1)]
    assert [(m["i"], m["m"]["vines"]) for m in messages] == [("r1", 5), ("r2", 7), ("r3", 9)]


def test_the_sample_sessions_verify(cli, r):
    code, out, err = cli("initialize", "--dry-run", "--tasks", str(TASKS))
    assert code == 0, err
    assert "block7-2026-06-01 verified (24 items)" in out and "block9-2026-06-02 verified (30 items)" in out


@pytest.mark.slow
def test_initialize_a_large_generated_session(redis_url, r, tmp_path):
    gen = subprocess.run([sys.executable, str(ROOT / "tasks" / "generate.py"), "--items", "100000", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "symphony.console.commands", "initialize", "--json",
                          str(tmp_path / "big-100000.yaml")], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["sent"] == [{"session": "big-100000", "registration": "new", "stage": "rvm", "added": 100000,
                               "skipped": 0, "done": 0, "resumed": 0}]
    assert "enqueue big-100000: 100,000/100,000" in run.stderr  # progress on large sessions
    assert r.llen(K.queue("rvm", "big-100000")) == 100000 and r.hlen(K.live("big-100000")) == 100000


def test_a_data_root_that_cannot_be_created_is_refused(cli, r, tasks):
    """Permission bits say yes to root even in /proc: verification makes (and removes) a
    directory there instead, so workers never crash on it later."""
    for root, field_line in (("/proc/nope", 3), ("/proc/self/nope/deeper", 3)):
        path = session_file(tasks, "bad", f"session: bad\npipeline: pipelines/scan.yaml\nroot: {root}\nitems: [r1]\n")
        code, _, err = cli("initialize", str(path))
        assert code == 1 and f"{path}:{field_line}: [root] the data root {root} cannot be created or written" in err, err
        assert r.dbsize() == 0
    writable = tasks / "fresh" / "data"
    path = session_file(tasks, "ok", f"session: ok\npipeline: pipelines/scan.yaml\nroot: {writable}\nitems: [r1]\n")
    assert cli("initialize", "--dry-run", str(path))[0] == 0
    assert not (tasks / "fresh").exists(), "verification must change nothing on disk"


STDLIB_PIPELINE = """\
pipeline: odd
stages:
  - name: a
    handler: {target}
    output: '{{root}}/{{item}}.json'
"""


@pytest.mark.parametrize("target", ["sys:exit", "os:system", "os:_exit", "shutil:rmtree", "builtins:print",
                                    "os.path:join"])
def test_handlers_in_the_standard_library_are_refused_unless_the_pipeline_allows_them(cli, r, tasks, target):
    pipeline = tasks / "pipelines" / "odd.yaml"
    pipeline.write_text(STDLIB_PIPELINE.format(target=target))
    path = session_file(tasks, "s", "session: s\npipeline: pipelines/odd.yaml\nroot: ../data\nitems: [r1]\n")
    code, _, err = cli("initialize", "--dry-run", str(path))
    assert code == 1 and f"{pipeline}:4: [stages[0].handler]" in err and "standard library" in err, err
    assert f"allow_stdlib_handlers: [{target}]" in err
    pipeline.write_text(STDLIB_PIPELINE.format(target=target) + f"allow_stdlib_handlers: [{target}]\n")
    code, out, err = cli("initialize", "--dry-run", str(path))
    assert code == 0, err
    assert r.dbsize() == 0


def test_items_from_csv_are_sent_with_their_fields(cli, r, tasks):
    (tasks / "rows.csv").write_text("id,vines,block\nrow-1,38,b7\nrow-2,40,b7\n")
    path = session_file(tasks, "csv", "session: csv\npipeline: pipelines/scan.yaml\nroot: ../data\n"
                                      "require: {vines: positive_int}\nitems_from: {csv: rows.csv}\n")
    code, out, err = cli("initialize", str(path))
    assert code == 0, err
    messages = [json.loads(m) for m in r.lrange(K.queue("rvm", "csv"), 0, -1)]
    assert [(m["i"], m["m"]) for m in messages] == [("row-1", {"vines": 38, "block": "b7"}),
                                                    ("row-2", {"vines": 40, "block": "b7"})]


def test_no_session_files_says_where_it_looked(cli, r, tmp_path):
    code, _, err = cli("initialize", "--tasks", str(tmp_path / "nowhere"))
    assert code == 1 and f"there is no {tmp_path / 'nowhere'}" in err, err
