"""symphony-worker's options from a TOML file and the environment, its secrets from files:
the command line beats the environment, which beats the file; a bad value names its file and line."""
from __future__ import annotations

import json
import os
import re
import sys

import pytest

from symphony.engine import (SHARED_ENVIRONMENT, ConfigError, EmbeddedRedis, Engine, env_name, load_session,
                             resolve_redis, shared_options)
from symphony.engine.initialize import initialize_session
from symphony.workers.cli import ENV_PREFIX, build_parser, options_from_args, parse
from tests.helpers import ROOT, WorkerRun, worker_env, write_pipeline, write_session

pytest.importorskip("tomllib", reason="TOML configuration files need Python 3.11's tomllib")


def toml(tmp_path, text: str):
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return str(path)


def test_file_then_environment_then_command_line(tmp_path):
    path = toml(tmp_path, 'pool = "linux"\nprocesses = 4\ndrain-timeout = 60\nnice = 3\nburst = true\n'
                          'log-format = "json"\nmetrics-interval = 0\n')
    args = parse(["--config", path, "--processes", "2"], env={"SYMPHONY_WORKER_NICE": "10"})
    options = options_from_args(args)
    assert options.pool == "linux" and options.processes == 2  # the flag beats the file
    assert options.nice == 10  # the variable beats the file
    assert options.drain_timeout_s == 60.0 and options.burst and options.log_format == "json"
    assert options.metrics_interval_s == 0.0
    where = {s.option: s.where for s in args.option_sources}
    assert where["pool"] == f"{path} line 1" and where["nice"] == "$SYMPHONY_WORKER_NICE" and "processes" not in where


def test_the_config_file_may_come_from_the_environment(tmp_path):
    path = toml(tmp_path, 'roles = "detect,cluster"\n')
    args = parse([], env={"SYMPHONY_WORKER_CONFIG": path, "SYMPHONY_WORKER_BURST": "yes"})
    assert options_from_args(args).roles == ("detect", "cluster") and args.burst is True


def test_a_flag_of_an_exclusive_pair_replaces_the_files_other(tmp_path):
    path = toml(tmp_path, 'pool = "linux"\n')
    args = parse(["--config", path, "--roles", "detect"], env={})
    assert args.pool is None and args.roles == "detect"


@pytest.mark.parametrize("text, message", [
    ('pool = "linux"\nprocesses = "four"\n', r"worker\.toml line 2: processes: expected an integer, got 'four'"),
    ('pool = "linux"\n\nprocesess = 4\n', r"worker\.toml line 3: unknown option 'procesess' \(the options: .*processes"),
    ('burst = "yes"\n', r"worker\.toml line 1: burst: expected true or false"),
    ('log-level = "LOUD"\n', r"worker\.toml line 1: log-level: invalid log level 'LOUD'"),
    ('log-format = "xml"\n', r"worker\.toml line 1: log-format: 'xml' is not one of text, json"),
    ('pool = "a"\nroles = "b"\n', r"pool \(.*worker\.toml line 1\) and roles \(.*line 2\): only one of them"),
    ('redis = "redis://:hunter2@example:6379/0"\n', r"line 1: redis: the URL holds a password.*redis-password-file"),
    ('pool = "linux\nprocesses = 2\n', r"worker\.toml: not valid TOML: .*line 1"),
    ('[worker]\npool = "x"\n', r"line 1: unknown option 'worker'"),
])
def test_a_bad_file_names_its_line_and_option(tmp_path, text, message):
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        parse(["--config", path], env={})
    assert "hunter2" not in str(info.value)


def test_a_bad_variable_is_named():
    with pytest.raises(ConfigError, match=r"\$SYMPHONY_WORKER_PROCESSES: processes: invalid literal"):
        parse([], env={"SYMPHONY_WORKER_PROCESSES": "many"})
    with pytest.raises(ConfigError, match=r"\$SYMPHONY_WORKER_BURST: burst: expected true or false"):
        parse([], env={"SYMPHONY_WORKER_BURST": "perhaps"})


def test_a_missing_config_file_is_one_clear_line(tmp_path, capsys):
    from symphony.workers.cli import main

    assert main(["--config", str(tmp_path / "absent.toml")]) == 2
    assert re.search(r"symphony-worker: cannot read the configuration file .*absent\.toml", capsys.readouterr().err)


def test_the_shared_options_own_variables_beat_the_file(tmp_path):
    path = toml(tmp_path, 'redis = "redis://file-host:6379/0"\n')
    args = parse(["--config", path], env={"SYMPHONY_REDIS_URL": "redis://env-host:6379/0"})
    assert args.redis is None  # resolve_redis reads $SYMPHONY_REDIS_URL
    assert parse(["--config", path], env={}).redis == "redis://file-host:6379/0"


def test_the_redis_url_may_come_from_a_file(tmp_path):
    """--redis-url-file (redis-url-file, $SYMPHONY_REDIS_URL_FILE): the URL, password included,
    from a file only its user reads; one option of every entry point."""
    url_file = tmp_path / "redis-url"
    url_file.write_text("redis://:s3cret-pass@file-host:6379/0\n")
    url_file.chmod(0o600)
    path = toml(tmp_path, f'redis-url-file = "{url_file}"\npool = "linux"\n')
    options = options_from_args(parse(["--config", path], env={}))
    assert options.redis.url == "redis://:s3cret-pass@file-host:6379/0" and options.redis.password == "s3cret-pass"
    assert "s3cret-pass" not in options.redis.display
    assert resolve_redis(env={"SYMPHONY_REDIS_URL_FILE": str(url_file)}).password == "s3cret-pass"
    # the environment's URL beats the file's; a --redis flag replaces it; not both flags
    assert parse(["--config", path], env={"SYMPHONY_REDIS_URL": "redis://env-host:6379/0"}).redis_url_file is None
    args = parse(["--config", path, "--redis", "redis://flag-host:6379/0"], env={})
    assert args.redis_url_file is None and options_from_args(args).redis.url == "redis://flag-host:6379/0"
    with pytest.raises(SystemExit):
        parse(["--redis", "redis://h:6379/0", "--redis-url-file", str(url_file)], env={})
    with pytest.raises(ConfigError, match=r"redis \(.*line 1\) and redis-url-file \(.*line 2\): only one"):
        parse(["--config", toml(tmp_path, f'redis = "redis://h:6379/0"\nredis-url-file = "{url_file}"\n')], env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="the Redis URL file .*empty is empty"):
        resolve_redis(url_file=str(tmp_path / "empty"), env={})
    with pytest.raises(ConfigError, match="cannot read the Redis URL file .*absent"):
        resolve_redis(url_file=str(tmp_path / "absent"), env={})
    # symphony (before or after its verb) and symphony-tui take it too
    from symphony.console.commands.main import build_parser as symphony_parser
    from symphony.console.tui_main import build_parser as tui_parser

    for argv in (["--redis-url-file", str(url_file), "status"], ["status", "--redis-url-file", str(url_file)]):
        assert shared_options(symphony_parser().parse_args(argv), env={}).redis.password == "s3cret-pass"
    assert shared_options(tui_parser().parse_args(["--redis-url-file", str(url_file)]), env={}).redis.password \
        == "s3cret-pass"


def test_every_worker_option_is_in_the_configuration_table():
    """docs/configuration.md has one row per option: its file key and its variable."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = doc.split("## symphony-worker from a file and the environment", 1)[1].split("\n## ", 1)[0]
    for action in build_parser()._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.dest in ("help", "version", "config"):
            continue
        key = longs[0][2:]
        assert f"`{key}`" in table, f"{key} is not in the worker's table"
        if action.dest not in SHARED_ENVIRONMENT:
            assert f"`{env_name(ENV_PREFIX, key)}`" in table, f"{env_name(ENV_PREFIX, key)} is not in the table"


@pytest.mark.slow
def test_a_worker_configured_only_by_its_file_drains_a_session_with_its_secrets_in_files(tmp_path):
    """Password and key in files only the service user reads; the file names them; nothing on argv."""
    password = "s3cret-config-test-password"
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(password=password, directory=str(tmp_path / "redis"))
    server.start()
    try:
        secrets = tmp_path / "secrets"
        secrets.mkdir(mode=0o700)
        (secrets / "redis-password").write_text(password + "\n")
        (secrets / "key").write_text(os.urandom(32).hex() + "\n")
        for f in secrets.iterdir():
            f.chmod(0o600)
        url = f"redis://127.0.0.1:{server.port}/0"
        write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "pool": "linux", "handler": "tests.handlers:ok",
                                                 "output": "{root}/{session}/{stage}/{item}.json"}])
        session = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", [f"i{n}" for n in range(6)],
                                root=str(tmp_path / "data"))
        config = resolve_redis(url, password_file=str(secrets / "redis-password"))
        from symphony.engine import load_key, sealer_from

        engine = Engine(config, sealer=sealer_from(load_key(str(secrets / "key"))))
        initialize_session(engine, load_session(session))
        path = toml(tmp_path, f'redis = "{url}"\nredis-password-file = "{secrets / "redis-password"}"\n'
                              f'encryption-key-file = "{secrets / "key"}"\n'
                              f'pool = "linux"\nprocesses = 2\nburst = true\n')
        env = {k: v for k, v in worker_env(url).items() if k != "REDIS_URL"}
        worker = WorkerRun(url, "--config", path, log_dir=tmp_path, env=env)
        assert worker.wait(90) == 0, worker.output()
        out = worker.output()
        assert password not in out and "configuration: file" in out
        assert all((tmp_path / "data" / "s1" / "work" / f"i{n}.json").is_file() for n in range(6))
        assert json.loads((tmp_path / "data" / "s1" / "work" / "i0.json").read_text())
        engine.close()
    finally:
        server.close()


def test_an_open_secret_file_is_warned_about(tmp_path):
    from symphony.engine import secret_file_problem

    path = tmp_path / "pw"
    path.write_text("x")
    path.chmod(0o644)
    assert "chmod 600" in (secret_file_problem(str(path)) or "")
    path.chmod(0o600)
    assert secret_file_problem(str(path)) is None
    assert sys.platform != "win32"
