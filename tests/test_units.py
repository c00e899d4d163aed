"""Pure logic: names, messages, redaction, configuration."""
from __future__ import annotations

import logging

import pytest

from symphony.engine import ConfigError, redact, resolve_redis
from symphony.engine.messages import InvalidMessage, decode_task
from symphony.spec import name_problem
from symphony.engine.redaction import redact_url, register_secret
from symphony.engine.messages import encode_task


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a\\b", "a:b", "{tag}", "a b", ".hidden", "x" * 201, "a..b"])
def test_names_that_could_escape_or_inject_are_refused(bad):
    assert name_problem(bad)


@pytest.mark.parametrize("good", ["row-001", "block7-2026-06-01", "a.b_c+d@e=f,g", "0"])
def test_ordinary_names_are_fine(good):
    assert name_problem(good) is None


def test_messages_round_trip_and_are_compact():
    raw = encode_task("s", "rvm", "row-1", 2, {"vines": 3})
    assert raw == '{"i":"row-1","s":"s","t":"rvm","a":2,"m":{"vines":3}}'
    task = decode_task(raw)
    assert (task.session, task.stage, task.item, task.attempt, task.meta) == ("s", "rvm", "row-1", 2, {"vines": 3})


@pytest.mark.parametrize("raw, words", [
    ("not json", "not valid JSON"), ("[1]", "not a JSON object"), ('{"s":"s","t":"r"}', "item"),
    ('{"i":"../x","s":"s","t":"r"}', "item"), ('{"i":"x","s":"s","t":"r","a":-1}', "attempts"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_invalid_messages_are_rejected_with_a_reason(raw, words):
    with pytest.raises(InvalidMessage, match=words):
        decode_task(raw)


def test_url_passwords_are_redacted():
    assert redact_url("redis://:s3cretpw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:pa%40ss@host:6380/1") == "rediss://user:***@host:6380/1"
    assert redact("error talking to redis://u:hunter22@h:1 now") == "error talking to redis://u:***@h:1 now"
    assert "topsecret" not in redact("x?password=topsecret&y=1")


def test_registered_secrets_are_redacted_everywhere(caplog):
    register_secret("correct-horse-battery")
    assert redact("auth failed for correct-horse-battery") == "auth failed for ***"
    from symphony.engine import install_log_redaction

    logger = logging.getLogger("t")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    install_log_redaction(logger)
    record = logger.makeRecord("t", logging.ERROR, __file__, 1, "pw=%s", ("correct-horse-battery",), None)
    handler.filters[0].filter(record)
    assert record.getMessage() == "pw=***"


def test_redis_config_precedence_and_password_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("file-password\n")
    config = resolve_redis(None, env={"REDIS_URL": "redis://h:1/2", "REDIS_PASSWORD_FILE": str(pw)})
    assert config.url == "redis://h:1/2" and config.password == "file-password" and config.explicit
    assert "file-password" not in repr(config) and "file-password" not in config.display
    assert resolve_redis("redis://x:9/0", env={"REDIS_URL": "redis://h:1/2"}).url == "redis://x:9/0"
    assert not resolve_redis(None, env={}).explicit
    with pytest.raises(ConfigError, match="scheme"):
        resolve_redis("http://x", env={})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_redis(None, password_file=str(tmp_path / "missing"), env={})


def test_the_retry_policy_is_the_stages():
    from symphony.engine import Handler, OutcomeKind, Stage, after_failure

    stage = Stage(name="s", handler=Handler(kind="python", target="m:f"), max_attempts=3, retry_backoff=2.0)
    first = after_failure(stage, 1)
    assert first.kind is OutcomeKind.RETRY and first.delay_s == 2.0
    assert after_failure(stage, 2).delay_s == 4.0
    assert after_failure(stage, 3).kind is OutcomeKind.FAILED
    # a timeout stops at once unless the stage retries timeouts
    assert after_failure(stage, 1, timed_out=True).kind is OutcomeKind.TIMED_OUT
    retrying = Stage(name="s", handler=stage.handler, max_attempts=2, retry_timeouts=True)
    assert after_failure(retrying, 1, timed_out=True).retries
    assert after_failure(retrying, 2, timed_out=True).kind is OutcomeKind.TIMED_OUT
    assert str(OutcomeKind.TIMED_OUT) == "timed_out"
