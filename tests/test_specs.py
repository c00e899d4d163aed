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


# --- command handlers whose standard output is the stage's output --------------------------------------
STDOUT_PIPELINE = """\
    pipeline: p
    stages:
      - name: digest
        command: [sha256sum, "{input}"]
        stdout: output
        output: "{root}/{session}/{stage}/{item}.sha256"
      - name: b
        command: [cat, "{input}"]
        output: "{root}/{session}/{stage}/{item}.txt"
"""


def test_stdout_output_is_parsed_into_the_handler_and_kept_in_the_record(tmp_path):
    from symphony.engine import Pipeline
    from symphony.spec import pipeline_from_dict

    pipeline = load_pipeline(write(tmp_path, "p.yaml", STDOUT_PIPELINE))
    assert pipeline.stage("digest").handler.stdout_is_output is True
    assert pipeline.stage("b").handler.stdout_is_output is False
    again = pipeline_from_dict(pipeline.to_dict())  # what a worker rebuilds from Redis
    assert isinstance(again, Pipeline) and again.stage("digest").handler.stdout_is_output is True
    assert again.fingerprint() == pipeline.fingerprint()
    plain = load_pipeline(write(tmp_path, "q.yaml", STDOUT_PIPELINE.replace("        stdout: output\n", "")))
    assert plain.fingerprint() != pipeline.fingerprint()


@pytest.mark.parametrize("stage, field, words", [
    ("handler: tests.handlers:ok\n    stdout: output\n    output: '{root}/{item}.x'", "stages[0].stdout",
     "only applies to a 'command' handler"),
    ("command: [cat]\n    stdout: stderr\n    output: '{root}/{item}.x'", "stages[0].stdout", "stdout must be 'output'"),
    ("command: [cat]\n    stdout: output", "stages[0].stdout", "needs the stage's 'output' template"),
])
def test_stdout_output_errors_name_the_field(tmp_path, stage, field, words):
    path = write(tmp_path, "p.yaml", f"pipeline: p\nstages:\n  - name: a\n    {stage}\n")
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    problem = next(p for p in info.value.problems if words in p.message)
    assert problem.field == field and problem.line == 5, info.value


# --- templates: plain placeholders only ----------------------------------------------------------------
HOSTILE_PLACEHOLDERS = ["{root:>200000000}", "{item!r}", "{item.upper}", "{item[0]}", "{}", "{0}", "{item:{root}}"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("placeholder", HOSTILE_PLACEHOLDERS)
def test_output_and_command_templates_allow_plain_placeholders_only(tmp_path, placeholder):
    output = write(tmp_path, "o.yaml", "pipeline: p\nstages:\n  - name: a\n    handler: m:f\n"
                                       f"    output: '{{root}}/{{item}}.{placeholder}'\n")
    command = write(tmp_path, "c.yaml", "pipeline: p\nstages:\n  - name: a\n"
                                        f"    command: [tool, '{placeholder}']\n")
    for path, field in ((output, "stages[0].output"), (command, "stages[0].command[1]")):
        with pytest.raises(SpecError) as info:
            load_pipeline(path)
        problem = info.value.problems[0]
        assert (problem.field, problem.line) == (field, 5 if path is output else 4), info.value
        assert "plain name" in problem.message or "bad placeholder" in problem.message, problem


@pytest.mark.timeout(60)
@pytest.mark.parametrize("placeholder", HOSTILE_PLACEHOLDERS)
def test_the_input_template_allows_plain_placeholders_only(tmp_path, placeholder):
    """Filling ``{root:>200000000}`` used to take half a minute and gigabytes before the error."""
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    path = write(tmp_path, "s.yaml", f"session: s\npipeline: p.yaml\ninput: '{placeholder}/{{item}}.csv'\nitems: [a]\n")
    with pytest.raises(SpecError) as info:
        load_session(path)
    problem = info.value.problems[0]
    assert (problem.field, problem.line) == ("input", 3), info.value


def test_literal_braces_and_braces_in_the_root_stay_literal(tmp_path):
    (tmp_path / "a{b}").mkdir()
    write(tmp_path / "a{b}", "p.yaml", GOOD_PIPELINE)
    spec = load_session(write(tmp_path / "a{b}", "s.yaml", "session: s\npipeline: p.yaml\nroot: data\n"
                                                          "input: '{root}/in/{{x}}-{item}.csv'\nitems: [r1]\n"))
    assert spec.input_path(spec.items[0]) == f"{tmp_path}/a{{b}}/data/in/{{x}}-r1.csv"


# --- items one per line (the fast path), CSV and JSON Lines ---------------------------------------------------
def test_items_written_one_per_line_load_as_pyyaml_reads_them(tmp_path):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    lines = ["  - {id: row-1, vines: 38, ok: yes, w: 1.5, day: 2026-06-01, note: 'a, b', n: ~, o: 010}",
             "  - row-2   # a comment",
             "",
             "  # a comment line",
             "  - {id: \"row 3\", vines: -4, tag: x_y.z}",
             "  - 17"]
    body = "session: s\npipeline: p.yaml\nitems:\n" + "\n".join(lines) + "\nroot: data\n"
    path = write(tmp_path, "s.yaml", body)
    expected = yaml.safe_load(body)["items"]
    from symphony.spec.yamlfile import FlowItems, load_yaml_with_list

    data, loc = load_yaml_with_list(path, "items")
    assert isinstance(data["items"], FlowItems), "the fast path was not taken"
    assert list(data["items"]) == expected
    assert [loc.line(("items", i)) for i in range(4)] == [4, 5, 8, 9]
    assert loc.line(("root",)) == 10


def test_items_one_per_line_report_their_line_and_field(tmp_path):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    items = "".join(f"  - {{id: row-{n}, vines: {n}}}\n" for n in range(1, 2001))
    items = items.replace("{id: row-1500, vines: 1500}", "{id: ../x, vines: 1500}")
    items = items.replace("{id: row-1700, vines: 1700}", "{id: row-1700, vines: 1, vines: 2}")
    path = write(tmp_path, "s.yaml", "session: s\npipeline: p.yaml\nitems:\n" + items)
    with pytest.raises(SpecError) as info:
        load_session(path)
    fields = {p.field: p for p in info.value.problems}
    assert fields["items[1499].id"].line == 1503 and "not a valid name" in fields["items[1499].id"].message
    assert fields["items[1699].vines"].line == 1703 and "duplicate key" in fields["items[1699].vines"].message


def test_items_from_csv(tmp_path):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    (tmp_path / "rows.csv").write_text("id,vines,block,input\nrow-1,38,b7,\nrow-2,40,b7,/data/r2.csv\n\"row-3\",1.5,,\n")
    spec = load_session(write(tmp_path, "s.yaml", "session: s\npipeline: p.yaml\nitems_from: {csv: rows.csv}\n"))
    assert [(i.id, dict(i.meta or {}), i.input) for i in spec.items] == [
        ("row-1", {"vines": 38, "block": "b7"}, None), ("row-2", {"vines": 40, "block": "b7"}, "/data/r2.csv"),
        ("row-3", {"vines": 1.5}, None)]


def test_items_from_jsonl(tmp_path):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    (tmp_path / "rows.jsonl").write_text('{"id": "row-1", "vines": 38}\n\n{"id": "row-2", "vines": 40, "gps": [1, 2]}\n')
    spec = load_session(write(tmp_path, "s.yaml", "session: s\npipeline: p.yaml\nitems_from: {jsonl: rows.jsonl}\n"))
    assert [(i.id, dict(i.meta)) for i in spec.items] == [("row-1", {"vines": 38}), ("row-2", {"vines": 40, "gps": [1, 2]})]


@pytest.mark.parametrize("name, text, line, column, field, words", [
    ("rows.csv", "id,vines\nrow-1,3\nrow-2,4,5\n", 3, 3, "", "3 cells, but the header has 2"),
    ("rows.csv", "vines\n3\n", 1, None, "", "no 'id' column"),
    ("rows.csv", "vines,id\n3,row-1\n4,../etc\n", 3, 2, "id", "not a valid name"),
    ("rows.csv", "id,vines\nrow-1,\"3\n", 2, None, "", "invalid CSV"),
    ("rows.jsonl", '{"id": "row-1"}\n{"id": "row-2", "vines": }\n', 2, 26, "", "invalid JSON"),
    ("rows.jsonl", '{"id": "row-1"}\n[1, 2]\n', 2, None, "", "must be a JSON object"),
    ("rows.jsonl", '{"id": "row-1"}\n{"vines": 3}\n', 2, None, "id", "item id"),
])
def test_rows_files_report_file_line_and_column(tmp_path, name, text, line, column, field, words):
    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    (tmp_path / name).write_text(text)
    kind = name.split(".")[1]
    with pytest.raises(SpecError) as info:
        load_session(write(tmp_path, "s.yaml", f"session: s\npipeline: p.yaml\nitems_from: {{{kind}: {name}}}\n"))
    problem = next(p for p in info.value.problems if words in p.message)
    assert (problem.file, problem.line, problem.column, problem.field) == (str(tmp_path / name), line, column, field)
    where = f"{tmp_path / name}:{line}" + (f":{column}" if column else "") + ":"
    assert str(problem).startswith(where), str(problem)


def test_required_fields_of_csv_rows_are_reported_at_their_row_and_column(tmp_path):
    from symphony.spec import verify_paths

    write(tmp_path, "p.yaml", GOOD_PIPELINE)
    (tmp_path / "rows.csv").write_text("id,vines\nrow-1,38\nrow-2,\nrow-3,zero\n")
    path = write(tmp_path, "s.yaml", "session: s\npipeline: p.yaml\nrequire: {vines: positive_int}\n"
                                     "items_from: {csv: rows.csv}\n")
    report = verify_paths([path])
    shown = sorted(str(p) for p in report.problems)
    assert shown == [f"{tmp_path / 'rows.csv'}:3: item 'row-2' has no 'vines' (required)",
                     f"{tmp_path / 'rows.csv'}:4:2: [vines] item 'row-3': vines='zero' is not positive int"], shown
