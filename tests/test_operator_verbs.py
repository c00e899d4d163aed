"""The operator's verbs: sessions, cancel, retry, purge, jobs, queues; --help everywhere."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
from pathlib import Path

import pytest

from symphony.console.commands.main import build_parser, main as symphony
from symphony.engine import Finish, Outcome, OutcomeKind
from tests.helpers import WorkerRun, sample_tasks, wait_until, write_pipeline, write_session



def one_stage(tmp_path: Path, items, name="ops", command=None, handler="tests.handlers:ok") -> Path:
    stage = {"name": "work", "pool": "p", "output": "{root}/{session}/{stage}/{item}.json", "max_attempts": 2}
    if command:
        stage["command"] = command
    else:
        stage["handler"] = handler
    write_pipeline(tmp_path / "pipe.yaml", [stage, {**stage, "name": "after"}])
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", items, root=str(tmp_path / "data"))


def _verbs(parser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every verb, and every sub-verb of a verb that has them (``symphony slurm status``)."""
    sub = next((a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"), None)
    if sub is None:
        return [prefix]
    return [v for name in sorted(set(sub.choices)) for v in _verbs(sub.choices[name], prefix + (name,))]


def all_verbs() -> list[str]:
    return [" ".join(v) for v in _verbs(build_parser())]


@pytest.mark.parametrize("verb", all_verbs())
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as info:
        symphony([*verb.split(), "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: symphony" in text
    if verb != "completion":  # every verb that talks to Redis takes the shared options
        assert "--redis URL" in text and "--redis-password-file" in text and "--encryption-key-file" in text


def fail_one(engine, session: str, stage: str, kind: str = OutcomeKind.FAILED):
    link = engine.worker_link("w-test", [stage])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    link.step(Finish(claimed, Outcome(kind, error=f"{kind} on purpose", stderr="the tail"), attempts=2), claim=False)
    return claimed


def test_sessions_lists_progress(cli, r, tmp_path):
    cli("initialize", str(one_stage(tmp_path, ["a", "b", "c"])))
    code, out, _ = cli("sessions")
    assert code == 0 and "ops" in out and "active" in out
    data = json.loads(cli("sessions", "--json")[1])
    assert data[0]["name"] == "ops" and data[0]["items"] == 3 and data[0]["queued"] == 3


@pytest.mark.slow
def test_cancel_drops_waiting_tasks_and_stops_running_ones(cli, r, redis_url, tmp_path):
    path = one_stage(tmp_path, [f"i{n}" for n in range(10)], command=["{python}", "-c", "import time; time.sleep(60)"])
    cli("initialize", str(path))
    worker = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path)
    try:
        wait_until(lambda: r.hget(K.stats("ops"), "work|running") == "1", message="a task to run")
        code, out, err = cli("cancel", "ops", "--yes")
        assert code == 0, err
        assert "9 waiting task(s) cancelled" in out and "1 running task(s) stop" in out
        wait_until(lambda: r.hget(K.stats("ops"), "work|cancelled") == "10", timeout=20,
                   message="the running task to stop as cancelled")
        assert r.llen(K.queue("work", "ops")) == 0 and r.hlen(K.live("ops")) == 0
        record = json.loads(r.hget(K.outcomes("ops"), "i5"))
        assert record["state"] == "cancelled" and record["error"] == "session cancelled"
    finally:
        worker.stop()
    assert json.loads(cli("sessions", "--json")[1])[0]["state"] == "cancelled"


def test_cancel_refuses_without_yes_when_not_on_a_terminal(cli, r, tmp_path, monkeypatch):
    cli("initialize", str(one_stage(tmp_path, ["a"])))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = cli("cancel", "ops")
    assert code == 1 and "Refusing without --yes" in err and r.llen(K.queue("work", "ops")) == 1


def test_retry_puts_failed_tasks_back_with_their_metadata(cli, r, engine, tmp_path):
    cli("initialize", str(one_stage(tmp_path, [{"id": "a", "vines": 7}, "b"])))
    fail_one(engine, "ops", "work")
    fail_one(engine, "ops", "work", OutcomeKind.TIMED_OUT)
    assert r.llen(K.queue("work", "ops")) == 0
    code, out, _ = cli("retry", "ops", "--failed-only")
    assert code == 0 and "1 task(s) back in their queues: work 1" in out
    code, out, _ = cli("retry", "ops", "--stage", "work")
    assert "1 task(s) back" in out
    messages = {json.loads(m)["i"]: json.loads(m) for m in r.lrange(K.queue("work", "ops"), 0, -1)}
    assert messages["a"]["m"] == {"vines": 7} and messages["a"]["a"] == 0
    stats = r.hgetall(K.stats("ops"))
    assert stats["work|failed"] == "0" and stats["work|timed_out"] == "0"
    assert "no failed tasks" in cli("retry", "ops")[1]


def test_purge_refuses_live_sessions_then_forgets_everything(cli, r, engine, tmp_path):
    path = one_stage(tmp_path, ["a", "b"])
    cli("initialize", str(path))
    engine.job_store("ops", "work", "a").set("score", 3)
    code, _, err = cli("purge", "ops", "--yes")
    assert code == 2 and "still has 2 item(s) queued or running" in err
    cli("cancel", "ops", "--yes")
    code, out, _ = cli("purge", "ops", "--yes", "--keys")
    assert code == 0 and "1 job key/value hash(es)" in out
    leftovers = [k for k in r.scan_iter() if "ops" in k]
    assert leftovers == [], leftovers
    # the name is free again, even for a different definition
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "other", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json"}])
    assert cli("initialize", str(path))[0] == 0


@pytest.mark.slow
def test_jobs_shows_the_last_jobs_key_values(cli, r, redis_url, tmp_path):
    sample_tasks(tmp_path, seconds=0.0)
    cli("initialize", str(tmp_path / "tasks" / "block7.yaml"))
    worker = WorkerRun(redis_url, "--burst", "--processes", "2", log_dir=tmp_path, cwd=tmp_path)
    assert worker.wait(120) == 0
    worker.stop()
    code, out, _ = cli("jobs", "block7-2026-06-01", "--last")
    assert code == 0 and "job process:row-" in out and "yield_kg" in out
    data = json.loads(cli("jobs", "block7-2026-06-01", "--json", "--limit", "1000")[1])
    assert len(data["jobs"]) == 24 * 3  # rvm, preprocess and process write key/values
    one = json.loads(cli("jobs", "block7-2026-06-01", "--job", "rvm:row-001", "--json")[1])
    assert int(one["values"]["vines"]) > 0


def test_queues_lists_lengths_and_clashes(cli, r, tmp_path):
    cli("initialize", str(one_stage(tmp_path, ["a", "b"])))
    code, out, _ = cli("queues")
    assert code == 0 and K.queue("work", "ops") in out and "1 empty queue(s) hidden" in out
    r.delete(K.queue("after", "ops"))
    r.set(K.queue("after", "ops"), "x")
    data = json.loads(cli("queues", "--json", "--all")[1])
    clash = next(q for q in data if q["name"] == K.queue("after", "ops"))
    assert clash["clash"] and clash["kind"] == "string"
    assert "CLASH" in cli("queues")[1]


def test_status_json_and_export(cli, r, tmp_path):
    cli("initialize", str(one_stage(tmp_path, ["a"])))
    data = json.loads(cli("status", "--json")[1])
    assert data["queues"][0]["role"] == "work" and data["queues"][0]["queued"] == 1
    target = tmp_path / "out" / "snap.json"
    code, out, _ = cli("status", "--export", str(target))
    assert code == 0 and str(target) in out
    assert json.loads(target.read_text())["sessions"][0]["name"] == "ops"


def test_a_redis_that_is_down_is_a_clear_error_without_the_password(monkeypatch, capsys):
    from symphony.engine.embedded import free_port

    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2secret@127.0.0.1:{port}/0")
    code = symphony(["sessions"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"symphony: Redis at redis://:***@127.0.0.1:{port}/0 is unavailable:")
    assert "hunter2secret" not in err and "Traceback" not in err
