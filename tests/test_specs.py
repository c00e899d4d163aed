"""Pipeline and session files: every problem is reported with its file, line and field."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from symphony.engine import SpecError, load_pipeline, load_session
from tests.helpers import TASKS


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD_PIPELINE = """\
    pipeline: p
    stages:
      - name: a
        handler: tests.handlers:ok
        output: "{root}/{session}/{stage}/{item}.json"
      - name: b
        aliases: [bee]
        command: ["{python}", "-c", "pass", "{input}", "{output}", "{level}"]
        params: {level: 3}
        output: "{root}/{session}/b/{item}.out"
"""


def test_sample_pipeline_and_session_load():
    spec = load_session(TASKS / "block7.yaml")
    assert spec.pipeline.stage_names == ("rvm", "preprocess", "detection", "process")
    assert spec.pipeline.canonical("preproc") == "preprocess"
    assert spec.pipeline.stage("detection").pool == "linux"
    assert len(spec.items) == 24 and spec.items[0].meta["vines"] > 0
    assert Path(spec.root).is_absolute() and spec.root.endswith(".symphony-data")


def test_good_pipeline(tmp_path):
    pipeline = load_pipeline(write(tmp_path, "p.yaml", GOOD_PIPELINE))
    assert pipeline.stage("bee").name == "b"
    assert pipeline.next_stage("a").name == "b" and pipeline.next_stage("b") is None
    assert pipeline.stage("b").output_dir_and_pattern("/r", "s") == ("/r/s/b", "", ".out")


@pytest.mark.parametrize("text, line, field, words", [
    ("pipeline: p\nstages:\n  - name: a\n    handler: m:f\n    timout: 3\n", 5, "stages[0].timout", "did you mean 'timeout'"),
    ("pipeline: p\nstages:\n  - name: a\n    handler: nocolon\n", 4, "stages[0].handler", "module:function"),
    ("pipeline: p\nstages:\n  - name: a\n    command: run it\n", 4, "stages[0].command", "list of arguments"),
    ("pipeline: p\nstages:\n  - name: a\n    command: [x, '{nope}']\n", 4, "stages[0].command[1]", "unknown placeholder {nope}"),
    ("pipeline: p\nstages:\n  - name: a\n    handler: m:f\n    output: '{root}/{item}/x.json'\n", 5, "stages[0].output", "file name"),
    ("pipeline: p\nstages:\n  - name: a\n    handler: m:f\n    max_attempts: 0\n", 5, "stages[0].max_attempts", ">= 1"),
    ("pipeline: p\nstages:\n  - name: 'a b'\n    handler: m:f\n", 3, "stages[0].name", "not a valid name"),
    ("pipeline: p\nstages:\n  - name: a\n    handler: m:f\n  - name: a\n    handler: m:f\n", 5, "stages[1].name", "already used"),
    ("pipeline: p\nstages: []\n", 2, "stages", "non-empty"),
    ("pipeline: p\npipeline: q\nstages: []\n", 2, "pipeline", "duplicate key"),
    ("pipeline: [unclosed\n", 2, "", "invalid YAML"),
])
def test_pipeline_problems_name_file_line_and_field(tmp_path, text, line, field, words):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    problem = next(p for p in info.value.problems if words in p.message)
    assert problem.file == str(path) and problem.line == line and problem.field == field
    assert f"{path}:{line}" in str(info.value)


def test_all_problems_are_reported_not_only_the_first(tmp_path):
    path = write(tmp_path, "bad.yaml", "pipeline: p\nstages:\n  - name: a\n    handler: x\n    timeout: -1\n  - {}\n")
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert len(info.value.problems) >= 3


def test_session_problems(tmp_path):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    path = write(tmp_path, "s.yaml", """\
        session: ../escape
        pipeline: p.yaml
        params: {zz: {x: 1}}
        items:
          - {id: ok-1}
          - {id: "../../etc/passwd"}
    """)
    with pytest.raises(SpecError) as info:
        load_session(path)
    fields = {p.field: p for p in info.value.problems}
    assert fields["session"].line == 1 and "not a valid name" in fields["session"].message
    assert fields["params.zz"].line == 3 and "unknown stage" in fields["params.zz"].message
    assert fields["items[1].id"].line == 6


def test_missing_pipeline_file(tmp_path):
    path = write(tmp_path, "s.yaml", "session: s\npipeline: nowhere.yaml\nitems: [a]\n")
    with pytest.raises(SpecError, match=r"s.yaml:2: \[pipeline\] pipeline file 'nowhere.yaml' not found"):
        load_session(path)


def test_paths_are_relative_to_the_session_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "p.yaml", GOOD_PIPELINE)
    spec = load_session(write(tmp_path / "sub", "s.yaml", "session: s\npipeline: p.yaml\nroot: ../data\nitems: [a]\n"))
    assert spec.root == str(tmp_path / "data")


def test_generated_items(tmp_path):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    spec = load_session(write(tmp_path, "s.yaml", "session: s\npipeline: p.yaml\n"
                                                  "items_from: {range: {prefix: row-, start: 1, count: 1000, width: 6}}\n"))
    assert len(spec.items) == 1000 and spec.items[0].id == "row-000001" and spec.items[-1].id == "row-001000"


def test_ids_are_known_distinct_only_when_one_generator_made_them(tmp_path):
    """A range (or a metadata table) cannot repeat an id; a list, or a list beside a range, can:
    only then does verification (and repair) look for duplicates."""
    pipeline = TASKS / "pipelines" / "scan.yaml"
    ranged = {"range": {"prefix": "r", "start": 0, "count": 3, "width": 2}}
    for extra, distinct in (({"items_from": ranged}, True), ({"items": ["r00"]}, False),
                            ({"items": ["r00"], "items_from": ranged}, False)):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({"session": "s", "pipeline": str(pipeline), **extra}))
        assert load_session(path).distinct_ids is distinct, extra
