"""Bounded verification: no file can make loading run for minutes or fill memory.

Each limit (aliases, size, nesting, items) is a clear error naming the file, found before the
work it would cost; ``initialize`` of a folder with one hostile file still verifies and sends
the others. The generous timeouts only catch a loader that runs away (before the limits, a 9x9
"billion laughs" file used more than 5.8 GB and 120 s).
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import sqlite3
from pathlib import Path

import pytest

from symphony.engine import SpecError, load_pipeline, load_session
from symphony.spec import LIMITS, Limits
from tests.helpers import TASKS

PIPELINE = f"pipeline: {TASKS / 'pipelines' / 'scan.yaml'}\n"


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def problem_of(exc: SpecError, path: Path):
    assert exc.problems and all(p.file == str(path) for p in exc.problems), exc
    return exc.problems[0]


@pytest.mark.timeout(60)
def test_a_billion_laughs_session_file_is_refused_at_once(tmp_path):
    path = tmp_path / "lol.yaml"
    path.write_text("session: lol\n" + PIPELINE + billion_laughs() + "items: *a8\n")
    with pytest.raises(SpecError) as info:
        load_session(path)
    problem = problem_of(info.value, path)
    assert "aliases" in problem.message and f"{LIMITS.alias_nodes:,} nodes" in problem.message
    assert problem.line is not None


@pytest.mark.timeout(60)
def test_a_billion_laughs_pipeline_file_is_refused_at_once(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: p\n" + billion_laughs() + "stages: [{name: a, handler: 'm:f', params: {x: *a8}}]\n")
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert "aliases" in problem_of(info.value, path).message


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("session: s\n" + PIPELINE + "params:\n  rvm: &p {seconds: 0}\n  preprocess: *p\nitems: [r1, r2]\n")
    assert load_session(path).params["preprocess"] == {"seconds": 0}


@pytest.mark.timeout(60)
def test_an_oversized_session_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    line = "  - {id: row-0000001, vines: 38}\n"
    with path.open("w") as fh:
        fh.write("session: big\n" + PIPELINE + "items:\n")
        fh.write(line * (LIMITS.session_bytes // len(line) + 1))
    with pytest.raises(SpecError) as info:
        load_session(path)
    problem = problem_of(info.value, path)
    assert "more than the limit of 64 MiB" in problem.message


@pytest.mark.timeout(60)
def test_yaml_that_is_not_one_item_per_line_has_a_smaller_limit(tmp_path):
    path = tmp_path / "block.yaml"
    with path.open("w") as fh:
        fh.write("session: block\n" + PIPELINE + "items:\n")
        fh.write("  - id: row-0000001\n    vines: 38\n" * (LIMITS.yaml_bytes // 30 + 1))
    with pytest.raises(SpecError) as info:
        load_session(path)
    assert "must be written one per line" in problem_of(info.value, path).message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("nested", ["[" * 100 + "]" * 100, "{a: " * 100 + "1" + "}" * 100, "[" * 100000])
def test_deep_nesting_is_refused(tmp_path, nested):
    path = tmp_path / "deep.yaml"
    path.write_text("session: deep\n" + PIPELINE + f"items: [r1]\nparams: {{rvm: {{x: {nested}}}}}\n")
    with pytest.raises(SpecError) as info:
        load_session(path)
    problem = problem_of(info.value, path)
    assert "nest" in problem.message and problem.line == 4, problem


@pytest.mark.timeout(60)
def test_the_number_of_items_is_bounded_whatever_their_source(tmp_path):
    small = Limits(items=1000)
    (tmp_path / "rows.csv").write_text("id\n" + "".join(f"r{n}\n" for n in range(1001)))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"id": "r{n}"}}\n' for n in range(1001)))
    sources = {"inline": "items:\n" + "".join(f"  - r{n}\n" for n in range(1001)),
               "block": "items:\n" + "".join(f"  - id: r{n}\n" for n in range(1001)),
               "range": "items_from: {range: {prefix: r, start: 0, count: 1001}}\n",
               "csv": "items_from: {csv: rows.csv}\n", "jsonl": "items_from: {jsonl: rows.jsonl}\n",
               "mixed": "items: [a, b]\nitems_from: {range: {prefix: r, start: 0, count: 999}}\n"}
    for name, body in sources.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"session: {name}\n" + PIPELINE + body)
        with pytest.raises(SpecError) as info:
            load_session(path, limits=small)
        assert any("1,000" in p.message and "limit" in p.message for p in info.value.problems), (name, info.value)
        path.write_text(path.read_text().replace("1001", "1000").replace("999", "998"))
        if name in ("range", "mixed"):
            assert len(load_session(path, limits=small).items) == 1000


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_runaway_metadata_query_is_stopped(tmp_path, monkeypatch):
    import symphony.spec.metadata as metadata

    monkeypatch.setattr(metadata, "LIMITS", Limits(items=1000, query_s=1.0))
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.execute("CREATE TABLE t (x)")
    path = tmp_path / "s.yaml"
    endless = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
    for query, words in ((endless + "SELECT n AS id FROM c", "more than 1,000 rows"),
                         (endless + "SELECT count(*) AS id FROM c", "stopped after 1 s")):
        path.write_text("session: s\n" + PIPELINE + f"metadata: {{sqlite: m.db, query: '{query}'}}\n"
                                                    "items_from: metadata\n")
        with pytest.raises(SpecError) as info:
            load_session(path)
        assert any(words in p.message and p.field == "metadata.query" for p in info.value.problems), info.value


@pytest.mark.timeout(120)
def test_initialize_reports_a_hostile_file_and_still_sends_the_others(cli, r, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a-lol.yaml").write_text("session: lol\n" + PIPELINE + billion_laughs() + "items: *a8\n")
    with (tasks / "b-big.yaml").open("w") as fh:
        fh.write("session: big\n" + PIPELINE + "items:\n")
        fh.write("  - {id: row-0000001, vines: 38}\n" * (LIMITS.session_bytes // 32 + 1))
    (tasks / "c-good.yaml").write_text("session: good\n" + PIPELINE + f"root: {tmp_path / 'data'}\nitems: [r1, r2]\n")
    code, out, err = cli("initialize", "--tasks", str(tasks))
    assert code == 1
    assert f"{tasks / 'a-lol.yaml'}:" in err and "aliases" in err
    assert f"{tasks / 'b-big.yaml'}:" in err and "more than the limit" in err
    assert "good: 2 item(s) enqueued for rvm" in out
    assert r.llen(K.queue("rvm", "good")) == 2 and not r.exists(K.queue("rvm", "lol")) and not r.exists(K.queue("rvm", "big"))
