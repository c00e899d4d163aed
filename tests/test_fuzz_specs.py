"""Property-based fuzzing (hypothesis) of pipeline files, session files and queue messages.

Both directions are checked: files generated valid load to exactly the values they were made
from; files generated with one known fault are refused with a problem at that fault's field and
line; and arbitrary (mostly broken) files either load to values that agree with what was written
or are refused with every problem naming its file and a field or line, never a traceback.
Verification never reports an internal crash ("cannot load"); a rejected file enqueues nothing.
``SYMPHONY_FUZZ_EXAMPLES`` raises the number of examples (default 150 per property).
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import os
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from symphony.engine import SpecError, load_pipeline, load_session, verify_paths
from symphony.engine.messages import InvalidMessage, decode_task
from symphony.spec import LIMITS, name_problem
from symphony.spec.fields import keys
from symphony.spec.pipeline import PIPELINE_FIELDS, STAGE_FIELDS
from symphony.spec.session import SESSION_FIELDS

STAGE_KEYS, TOP_KEYS, SESSION_KEYS = keys(STAGE_FIELDS), keys(PIPELINE_FIELDS), keys(SESSION_FIELDS)

EXAMPLES = int(os.environ.get("SYMPHONY_FUZZ_EXAMPLES", "150") or 150)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

GOOD_PIPELINE = {"pipeline": "p", "stages": [
    {"name": "a", "pool": "win", "handler": "tests.handlers:ok", "output": "{root}/{session}/{stage}/{item}.json"},
    {"name": "b", "pool": "lin", "command": ["{python}", "-c", "pass", "{input}", "{output}"],
     "output": "{root}/{session}/{stage}/{item}.json", "timeout": 5}]}
GOOD_SESSION = {"session": "s1", "pipeline": "pipe.yaml", "root": "data", "require": ["vines"],
                "items": [{"id": "row-1", "vines": 3}, {"id": "row-2", "vines": 4}]}

# values that are plausible, wrong, or hostile for any field
nasty_text = st.sampled_from(["", " ", "../x", "a:b", "{item}", "{nope}", "{", "}", "x" * 300, "\x00", "é", "~",
                              "-1", "1e999", "null", "yes", "module:func", "a..b", "${HOME}", "%s", "\\", "*"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    nasty_text, st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.one_of(nasty_text, st.text(max_size=8)),
                                                                       inner, max_size=4)), max_leaves=12)


def mutated(base: dict, keys: tuple[str, ...]) -> st.SearchStrategy:
    """``base`` with some fields replaced, removed or added (known and unknown names)."""
    field = st.one_of(st.sampled_from(keys), st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=10))
    return st.builds(lambda changes, drops: {**{k: v for k, v in base.items() if k not in drops}, **changes},
                     st.dictionaries(field, values, max_size=3), st.sets(st.sampled_from(list(base)), max_size=2))


def stage_strategy() -> st.SearchStrategy:
    return st.one_of(mutated(GOOD_PIPELINE["stages"][0], STAGE_KEYS), mutated(GOOD_PIPELINE["stages"][1], STAGE_KEYS),
                     values)


pipelines = st.one_of(
    st.builds(lambda top, stages: {**top, "stages": stages}, mutated({"pipeline": "p"}, TOP_KEYS),
              st.lists(stage_strategy(), max_size=4)),
    mutated(GOOD_PIPELINE, TOP_KEYS), values)
sessions = st.one_of(mutated(GOOD_SESSION, SESSION_KEYS),
                     st.builds(lambda s, items: {**s, "items": items}, mutated(GOOD_SESSION, SESSION_KEYS),
                               st.lists(st.one_of(values, st.fixed_dictionaries({"id": values}, optional={
                                   "vines": values, "input": values})), max_size=5)),
                     values)


def text_of(data) -> str:
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return repr(data)


@st.composite
def broken_text(draw, base: dict) -> str:
    """Valid YAML cut, spliced or sprinkled with YAML syntax (tabs, anchors, unclosed quotes)."""
    text = yaml.safe_dump(base, sort_keys=False)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(["\t", ":", "- ", "&a ", "*a", "*b", "'", '"', "{", "[", "\n  ", "!!python/object ",
                                      "? ", "%YAML 1.1\n", "---\n", "<<: *a\n", "\x00", "\ufeff"]))
        cut = draw(st.integers(0, 3))
        text = text[:pos] + piece + text[pos + cut:]
    return text


def assert_pipeline_agrees(pipeline, written: dict) -> None:
    """A pipeline that loaded says what its file says."""
    assert pipeline.name == written["pipeline"]
    assert pipeline.stage_names == tuple(s["name"] for s in written["stages"])
    for stage, raw in zip(pipeline.stages, written["stages"]):
        assert stage.handler.kind == ("python" if "handler" in raw else "command")
        for key in ("pool", "timeout", "max_attempts", "output"):
            if raw.get(key) is not None:
                assert getattr(stage, key) == raw[key], (key, stage, raw)


def assert_session_agrees(spec, written: dict) -> None:
    """A session that loaded says what its file says."""
    assert spec.name == written["session"]
    listed = written.get("items")
    if isinstance(listed, list) and written.get("items_from") is None:
        ids = [str(i["id"]) if isinstance(i, dict) else str(i) for i in listed]
        assert [item.id for item in spec.items] == ids


def check_problems(exc: SpecError, allowed_files: set[str]) -> None:
    assert exc.problems, "a SpecError must list at least one problem"
    for problem in exc.problems:
        assert problem.file in allowed_files, f"problem in an unexpected file: {problem}"
        assert problem.field or problem.line is not None, f"problem names neither a field nor a line: {problem}"
        assert problem.message and "Traceback" not in problem.message
        assert str(problem).startswith(problem.file), str(problem)


@FUZZ
@given(data=pipelines)
def test_pipeline_files_load_or_name_the_file_and_the_field(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "pipe.yaml"
    path.write_text(text_of(data), encoding="utf-8")
    try:
        pipeline = load_pipeline(path)
    except SpecError as exc:
        check_problems(exc, {str(path)})
        return
    assert_pipeline_agrees(pipeline, yaml.safe_load(path.read_text(encoding="utf-8")))


@FUZZ
@given(text=st.one_of(broken_text(GOOD_PIPELINE), broken_text(GOOD_SESSION), st.sampled_from(["", "\n", "---\n", "#\n"]),
                      st.binary(max_size=60)))
def test_broken_yaml_is_reported_with_its_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("y")
    (folder / "pipe.yaml").write_text(yaml.safe_dump(GOOD_PIPELINE), encoding="utf-8")
    path = folder / "broken.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for loader in (load_pipeline, load_session):
        try:
            loaded = loader(path)
        except SpecError as exc:
            check_problems(exc, {str(path), str(folder / "pipe.yaml")})
            continue
        written = yaml.safe_load(path.read_bytes())  # what PyYAML reads there is what we loaded
        if loader is load_pipeline:
            assert_pipeline_agrees(loaded, written)
        else:
            assert_session_agrees(loaded, written)


@FUZZ
@given(data=sessions, pipeline=st.one_of(st.just(GOOD_PIPELINE), pipelines))
def test_session_files_load_or_name_the_file_and_the_field(tmp_path_factory, data, pipeline):
    folder = tmp_path_factory.mktemp("s")
    (folder / "pipe.yaml").write_text(text_of(pipeline), encoding="utf-8")
    path = folder / "session.yaml"
    path.write_text(text_of(data), encoding="utf-8")
    try:
        spec = load_session(path)
    except SpecError as exc:
        check_problems(exc, {str(path), str(folder / "pipe.yaml")})
    else:
        assert_session_agrees(spec, yaml.safe_load(path.read_text(encoding="utf-8")))
    report = verify_paths([path])
    for problem in report.problems:
        assert "cannot load" not in problem.message, f"the loader crashed: {problem}"
        assert problem.field or problem.line is not None, f"problem names neither a field nor a line: {problem}"
        assert problem.file in {str(path), str(folder / "pipe.yaml")}, problem


@settings(max_examples=max(20, EXAMPLES // 5), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=sessions)
def test_a_rejected_session_file_enqueues_nothing(tmp_path_factory, redis_url, r, data):
    from symphony.console.commands.main import main

    r.flushall()
    folder = tmp_path_factory.mktemp("i")
    (folder / "pipe.yaml").write_text(yaml.safe_dump(GOOD_PIPELINE), encoding="utf-8")
    path = folder / "session.yaml"
    path.write_text(text_of(data), encoding="utf-8")
    code = main(["initialize", str(path), "--redis", redis_url])
    if code != 0:
        assert code == 1
        assert r.dbsize() == 0, f"a rejected file left keys in Redis: {sorted(r.scan_iter())[:10]}"
    else:
        assert r.exists(K.session(load_session(path).name))


@settings(max_examples=EXAMPLES * 2, deadline=None, derandomize=True)
@given(raw=st.one_of(st.text(max_size=200), st.binary(max_size=200), st.builds(text_of, values),
                     st.builds(lambda d: text_of({"i": "x", "s": "s", "t": "a", "a": 0, **d}),
                               st.dictionaries(st.sampled_from(list("isatme")), values, max_size=4))))
def test_any_queue_message_decodes_or_is_invalid_with_a_reason(raw):
    try:
        task = decode_task(raw)
    except InvalidMessage as exc:
        assert str(exc)
        return
    for name in (task.item, task.session):  # whatever decodes is safe to use in keys and paths
        assert ":" not in name and "/" not in name and ".." not in name and "{" not in name


def test_the_fuzzers_examples_are_not_all_rejected(tmp_path):
    """The strategies reach valid files too (otherwise they would only test the first check)."""
    folder = tmp_path
    (folder / "pipe.yaml").write_text(yaml.safe_dump(GOOD_PIPELINE))
    (folder / "s.yaml").write_text(yaml.safe_dump(GOOD_SESSION))
    assert load_session(folder / "s.yaml").name == "s1"
    assert load_pipeline(Path(folder / "pipe.yaml")).stage_names == ("a", "b")


ranges = st.fixed_dictionaries({}, optional={
    "prefix": st.one_of(nasty_text, st.text(max_size=12)),
    "start": st.one_of(st.integers(-5, 1000), st.integers(10**6, 10**18)),
    "count": st.one_of(st.integers(-5, 300), st.integers(10**8, 10**15)),
    "width": st.one_of(st.integers(-5, 12), st.integers(199, 10**12))})


@pytest.mark.timeout(120)
@FUZZ
@given(spec=ranges)
def test_generated_items_are_bounded_and_valid(tmp_path_factory, spec):
    """items_from: {range: ...} with absurd numbers (a typo in a count) is a problem on that field,
    not a process that builds a billion items (before the fix it never returned)."""
    folder = tmp_path_factory.mktemp("r")
    (folder / "pipe.yaml").write_text(yaml.safe_dump(GOOD_PIPELINE), encoding="utf-8")
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({"session": "s", "pipeline": "pipe.yaml", "items_from": {"range": spec}}))
    try:
        loaded = load_session(path)
    except SpecError as exc:
        check_problems(exc, {str(path)})
        return
    assert len(loaded.items) <= LIMITS.items
    for item in (loaded.items[:1] + loaded.items[-1:]):
        assert not name_problem(item.id), item.id
    start, width = spec.get("start", 1), spec.get("width", 0)
    assert len(loaded.items) == spec["count"]
    if loaded.items:
        assert loaded.items[0].id == f"{spec.get('prefix', 'item-')}{start:0{width}d}"


# --- valid files load to what they were made from; one known fault is refused where it is ----------------
stage_names = st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True), min_size=1, max_size=5, unique=True)


@st.composite
def valid_pipelines(draw) -> dict:
    stages = []
    for name in draw(stage_names):
        stage = {"name": name, "pool": draw(st.sampled_from(["windows", "linux", "gpu-1"])),
                 "output": draw(st.sampled_from(["{root}/{session}/{stage}/{item}.json", "{root}/x/{item}",
                                                 "{root}/{stage}/pre-{item}.out"])),
                 "timeout": draw(st.one_of(st.integers(1, 10**6), st.floats(0.01, 1e6))),
                 "max_attempts": draw(st.integers(1, 50))}
        if draw(st.booleans()):
            stage["handler"] = draw(st.sampled_from(["tests.handlers:ok", "symphony.workers.sample_handlers:rvm"]))
        else:
            stage["command"] = ["{python}", "-c", "pass", "{input}", draw(st.sampled_from(["{output}", "{item}", "x"]))]
            if draw(st.booleans()):
                stage["stdout"] = "output"
        stages.append(stage)
    return {"pipeline": draw(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)), "stages": stages}


STAGE_FAULTS = [  # (field, bad value, words of the message)
    ("name", "a b", "not a valid name"), ("pool", "x:y", "not a valid name"), ("timeout", 0, ">= 0.001"),
    ("timeout", "soon", "must be a number"), ("max_attempts", 0, ">= 1"), ("max_attempts", 1.5, "an integer"),
    ("output", "{root}/{item}/x.json", "file name"), ("output", "{root}/{item:>99999}", "not a plain name"),
    ("output", "{root}/{nope}/{item}", "unknown placeholder"), ("retry_timeouts", "maybe", "true or false"),
    ("handler", "nocolon", "module:function"), ("aliases", ["ok", "b c"], "not a valid name"),
    ("params", [1, 2], "params must be a mapping"), ("timout", 3, "did you mean 'timeout'"),
]


@FUZZ
@given(data=valid_pipelines())
def test_valid_pipelines_load_to_what_they_say(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("vp") / "pipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    pipeline = load_pipeline(path)
    assert_pipeline_agrees(pipeline, data)
    for stage, raw in zip(pipeline.stages, data["stages"]):
        assert stage.handler.stdout_is_output is (raw.get("stdout") == "output")
        assert stage.handler.argv == tuple(raw.get("command", ()))


@FUZZ
@given(data=valid_pipelines(), fault=st.sampled_from(STAGE_FAULTS), where=st.integers(0, 4))
def test_a_pipeline_with_one_fault_is_refused_at_that_field(tmp_path_factory, data, fault, where):
    key, bad, words = fault
    index = where % len(data["stages"])
    stage = data["stages"][index]
    if key == "handler":
        stage.pop("command", None), stage.pop("stdout", None)
    stage[key] = bad
    path = tmp_path_factory.mktemp("fp") / "pipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    check_problems(info.value, {str(path)})
    field = f"stages[{index}].{key}"
    found = [p for p in info.value.problems if p.field.startswith(field) and words in p.message]
    assert found, f"expected a problem at {field} saying {words!r}: {info.value}"
    assert found[0].line == line_of(path.read_text(), field_path(found[0].field)), found[0]


def field_path(field: str) -> tuple:
    """``stages[0].aliases[1]`` -> ``("stages", 0, "aliases", 1)``."""
    import re

    return tuple(int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field))


def line_of(text: str, path: tuple) -> int:
    """The line PyYAML gives the key (or entry) at ``path``."""
    node = yaml.compose(text)
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(part, int):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            key, node = next((k, v) for k, v in node.value if k.value == part)
            line = key.start_mark.line + 1
    return line


# item lines as operators write them, with the scalars YAML gives types to
item_tokens = st.sampled_from(["38", "0", "-4", "010", "0x1F", "1_000", "1.5", "-.5", "1e3", "6.02e+23", ".inf", "-.Inf",
                               ".nan", "yes", "No", "on", "OFF", "true", "False", "null", "~", "2026-06-01",
                               "2026-13-45", "2001-12-14t21:59:43.10-05:00", "a.b", "x_y", "r+1", "a@b", "a=b", "_",
                               "'quoted, with: colon'", '"double"', "''", "/data/x.csv", "1:20", "row-007"])
ids = st.from_regex(r"row-[0-9]{1,6}", fullmatch=True)


@st.composite
def item_lines(draw) -> list[str]:
    lines = []
    for item_id in draw(st.lists(ids, min_size=1, max_size=30, unique=True)):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            lines.append(f"  - {item_id}")
        elif kind == 1:
            lines.append(draw(st.sampled_from(["", "  # a comment", "# at the margin"])))
            lines.append(f"  -   {{id: {item_id}}}   # trailing")
        else:
            fields = draw(st.dictionaries(st.sampled_from(["vines", "block", "w", "day", "ok", "input"]), item_tokens,
                                          max_size=3))
            body = ", ".join([f"id: {item_id}"] + [f"{k}: {v}" for k, v in fields.items()])
            lines.append(f"  - {{{body}}}")
    return lines


@FUZZ
@given(lines=item_lines(), after=st.sampled_from(["", "root: data\n", "require: [vines]\n"]))
def test_items_one_per_line_load_exactly_as_pyyaml_reads_them(tmp_path_factory, lines, after):
    """The fast path for items written one per line gives PyYAML's values (or PyYAML's refusal)."""
    folder = tmp_path_factory.mktemp("fl")
    (folder / "pipe.yaml").write_text(yaml.safe_dump(GOOD_PIPELINE), encoding="utf-8")
    text = "session: s1\npipeline: pipe.yaml\nitems:\n" + "\n".join(lines) + "\n" + after
    path = folder / "s.yaml"
    path.write_text(text)
    try:
        expected = yaml.safe_load(text)
    except Exception:
        expected = None
    from symphony.spec.yamlfile import load_yaml_with_list

    try:
        data, loc = load_yaml_with_list(path, "items")
        loaded = list(data["items"])
    except SpecError as exc:
        assert expected is None, f"PyYAML reads this file, we refused it: {exc}"
        check_problems(exc, {str(path)})
        return
    assert expected is not None, "PyYAML refuses this file, we read it"
    assert loaded == expected["items"]
    item_rows = [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith("- ")]
    assert [loc.line(("items", i)) for i in range(len(item_rows))] == item_rows


@FUZZ
@given(lines=item_lines(), bad=st.sampled_from([("../etc", "id", "not a valid name"), ("a b", "id", "not a valid name"),
                                                  ("{x: 1}", "", "an item must be an id")]),
       where=st.integers(0, 40))
def test_a_session_with_one_bad_item_is_refused_at_its_line(tmp_path_factory, lines, bad, where):
    assume(not any("2026-13-45" in line for line in lines))  # a value PyYAML cannot build: refused whole
    folder = tmp_path_factory.mktemp("bi")
    (folder / "pipe.yaml").write_text(yaml.safe_dump(GOOD_PIPELINE), encoding="utf-8")
    rows = [n for n, line in enumerate(lines) if line.lstrip().startswith("- ")]
    row = rows[where % len(rows)]
    value, field, words = bad
    lines[row] = f"  - [{value}]" if not field else f"  - {{id: '{value}'}}"
    path = folder / "s.yaml"
    path.write_text("session: s1\npipeline: pipe.yaml\nitems:\n" + "\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_session(path)
    index = rows.index(row)
    expected = f"items[{index}]" + (f".{field}" if field else "")
    found = [p for p in info.value.problems if p.field == expected and words in p.message]
    assert found and found[0].line == row + 4, info.value
