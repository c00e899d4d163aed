"""Property-based fuzzing (hypothesis) of pipeline files, session files and queue messages.

Properties: loading never raises anything but SpecError (no traceback for bad input); every
problem names the file it is in, and a field (or, for YAML that does not parse, a line);
verification never reports an internal crash ("cannot load"); a rejected file enqueues
nothing. ``SYMPHONY_FUZZ_EXAMPLES`` raises the number of examples (default 150 per property).
"""
from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphony.engine import SpecError, load_pipeline, load_session, verify_paths
from symphony.engine.messages import InvalidMessage, decode_task
from symphony.engine.names import name_problem
from symphony.engine.pipeline import STAGE_KEYS, TOP_KEYS
from symphony.engine.session_file import SESSION_KEYS

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
        load_pipeline(path)
    except SpecError as exc:
        check_problems(exc, {str(path)})


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
            loader(path)
        except SpecError as exc:
            check_problems(exc, {str(path), str(folder / "pipe.yaml")})


@FUZZ
@given(data=sessions, pipeline=st.one_of(st.just(GOOD_PIPELINE), pipelines))
def test_session_files_load_or_name_the_file_and_the_field(tmp_path_factory, data, pipeline):
    folder = tmp_path_factory.mktemp("s")
    (folder / "pipe.yaml").write_text(text_of(pipeline), encoding="utf-8")
    path = folder / "session.yaml"
    path.write_text(text_of(data), encoding="utf-8")
    try:
        load_session(path)
    except SpecError as exc:
        check_problems(exc, {str(path), str(folder / "pipe.yaml")})
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
        assert r.exists("symphony:session:" + load_session(path).name)


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
    assert len(loaded.items) <= 10_000_000
    for item in (loaded.items[:1] + loaded.items[-1:]):
        assert not name_problem(item.id), item.id
