"""What an operator expects of every command: the same shared options (one definition), --version,
--log-level and --log-format, shell completion, a clear answer for an unknown session, and one
description of what cancel does."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys

import pytest

import symphony
from symphony.console.commands.completion import PROGRAMS, script
from symphony.console.commands.main import build_parser as symphony_parser
from symphony.console.commands.main import main as symphony_main
from symphony.console.tui_main import build_parser as tui_parser
from symphony.engine import CANCEL_EFFECT
from symphony.workers.cli import build_parser as worker_parser
from tests.helpers import ROOT, worker_env

SHARED = ("--redis", "--redis-password-file", "--redis-ca-file", "--encryption-key-file", "--log-level", "--log-format")


def _options(parser) -> dict[str, object]:
    return {o: a for a in parser._actions for o in a.option_strings}


def _verb_parsers(parser):
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, child in sub.choices.items():
        yield name, child
        nested = [a for a in child._actions if a.__class__.__name__ == "_SubParsersAction"]
        for action in nested:
            yield from ((f"{name} {n}", c) for n, c in action.choices.items())


def test_every_entry_point_and_verb_takes_the_shared_options_from_one_definition():
    programs = {"symphony": symphony_parser(), "symphony-worker": worker_parser(), "symphony-tui": tui_parser()}
    helps = {}
    for prog, parser in programs.items():
        options = _options(parser)
        assert set(SHARED) | {"--version"} <= set(options), (prog, sorted(set(SHARED) - set(options)))
        for name in SHARED:
            if name != "--encryption-key-file":  # each program says what the key is for
                helps.setdefault(name, set()).add(re.sub(r"\(default \w+\)", "", options[name].help))
    assert all(len(texts) == 1 for texts in helps.values()), helps
    for verb, parser in _verb_parsers(programs["symphony"]):
        has_actions = any(a.__class__.__name__ == "_SubParsersAction" for a in parser._actions)
        if verb != "completion" and not has_actions:  # a verb of actions: each action takes them
            assert set(SHARED) <= set(_options(parser)), verb


def _python(*argv: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env or worker_env("redis://127.0.0.1:1/0"))


@pytest.mark.parametrize("module, prog", [("symphony", "symphony"), ("symphony.workers", "symphony-worker"),
                                          ("symphony.console.tui_main", "symphony-tui")])
def test_version(module, prog):
    out = _python("-m", module, "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{prog} {symphony.__version__}"


def test_the_shared_options_may_come_before_or_after_the_verb(redis_url, monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SYMPHONY_REDIS_URL", raising=False)
    for argv in (["--redis", redis_url, "sessions", "--json"], ["sessions", "--json", "--redis", redis_url],
                 ["--redis", "redis://127.0.0.1:1/0", "sessions", "--json", "--redis", redis_url]):
        assert symphony_main(argv) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out) == []
    assert symphony_main(["sessions", "--redis", redis_url, "--log-level", "info"]) == 0
    assert logging.getLogger().level == logging.INFO


def test_symphony_takes_log_level_and_format(capsys):
    assert symphony_main(["--log-level", "debug", "--log-format", "json", "completion", "bash"]) == 0
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    logging.getLogger("symphony.test").warning("hello %s", "there")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["message"] == "hello there" and record["logger"] == "symphony.test"
    assert symphony_main(["--log-level", "ERROR", "completion", "bash"]) == 0
    assert root.level == logging.ERROR
    assert symphony_main(["completion", "bash"]) == 0
    assert root.level == logging.WARNING  # the default
    with pytest.raises(SystemExit):
        symphony_main(["--log-level", "LOUD", "completion", "bash"])


@pytest.mark.slow
def test_a_worker_logs_json_lines_with_dates(redis_url):
    out = _python("-m", "symphony.workers", "--burst", "--processes", "1", "--log-format", "json",
                  env=worker_env(redis_url))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", lines[0]["time"])
    text = _python("-m", "symphony.workers", "--burst", "--processes", "1", env=worker_env(redis_url))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO ", text.stderr), text.stderr


def _complete(shell: str, line: str) -> list[str]:
    """What the completion script offers for ``line`` (the cursor at its end)."""
    words = line.split(" ")
    program = f"""
{script(shell)}
COMP_WORDS=({' '.join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
{'_' + re.sub(r'[^A-Za-z0-9_]', '_', words[0]) + '_complete'}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    exe = shutil.which(shell)
    out = subprocess.run([exe, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    offered = [w for w in out.stdout.splitlines() if w]
    # zsh's compgen (bashcompinit) offers every candidate: zsh itself keeps those matching the word
    return [w for w in offered if w.startswith(words[-1])] if shell == "zsh" else offered


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion_offers_verbs_options_choices_and_files(shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed on this machine")
    assert {"status", "sessions", "initialize", "update", "completion"} <= set(_complete(shell, "symphony "))
    assert _complete(shell, "symphony sta") == ["status"]
    assert "--export" in _complete(shell, "symphony status --ex")
    assert _complete(shell, "symphony --log-format j") == ["json"]
    assert set(_complete(shell, "symphony acl ")) >= {"worker", "reader"}
    assert "--scale-set" in _complete(shell, "symphony metrics collect --sc")
    assert "pyproject.toml" in _complete(shell, "symphony status --redis-ca-file pyproj")
    assert "pyproject.toml" in _complete(shell, "symphony initialize pyproj")
    assert _complete(shell, "symphony --redis redis://x sta") == ["status"]  # an option's value is skipped
    assert "--pool" in _complete(shell, "symphony-worker --po")
    assert "--demo" in _complete(shell, "symphony-tui --de")


def test_the_completion_script_covers_every_console_script():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {prog for prog, _ in PROGRAMS} == set(scripts)
    assert all(scripts[prog].startswith(module + ":") for prog, module in PROGRAMS)


def test_jobs_of_an_unknown_session_is_an_error_like_every_verb(cli):
    for verb in (["jobs", "NOSUCH"], ["jobs", "NOSUCH", "--last"], ["retry", "NOSUCH"], ["cancel", "NOSUCH", "--yes"]):
        code, out, err = cli(*verb)
        assert code == 2 and "no session named 'NOSUCH'" in err, (verb, code, out, err)


def _words(text: str) -> str:
    return " ".join(text.split())


def test_cancel_is_described_in_one_set_of_words(capsys):
    with pytest.raises(SystemExit):
        symphony_main(["cancel", "--help"])
    assert _words(CANCEL_EFFECT) in _words(capsys.readouterr().out)
    assert _words(CANCEL_EFFECT) in _words((ROOT / "docs" / "sessions.md").read_text())
    source = (ROOT / "symphony" / "console" / "actions.py").read_text()  # the console's dialog
    assert "ConfirmScreen(f\"Cancel session {session}?\", CANCEL_EFFECT" in source
    assert "running tasks are stopped" in CANCEL_EFFECT and "recorded as cancelled" in CANCEL_EFFECT
    assert os.path.exists(ROOT / "docs" / "sessions.md")


def test_a_redis_py_without_driver_info_still_connects(redis_url):
    """redis-py before 7.1 has no ``redis.driver_info``: every command must still work there."""
    code = ("import sys, redis\n"
            "sys.modules['redis.driver_info'] = None  # as if it did not exist: importing it fails\n"
            "from symphony.console.commands.main import main\n"
            "sys.exit(main(['sessions', '--json']))\n")
    out = _python("-c", code, env=worker_env(redis_url))
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
