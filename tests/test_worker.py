"""symphony-worker end to end: real processes, a real Redis, outputs on disk."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from symphony.engine import Engine, load_session, resolve_redis
from symphony.engine.initialize import initialize_session
from tests.helpers import WorkerRun, sample_tasks, wait_until, worker_env, write_pipeline, write_session, held


def symphony(redis_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=cwd, env=worker_env(redis_url),
                          capture_output=True, text=True, timeout=120)


def init(engine: Engine, path: Path):
    return initialize_session(engine, load_session(path))


def stats(r, session: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(K.stats(session)).items()}


def inflight_total(r) -> int:
    return sum(len(held(r, w)) for w in r.zrange(K.workers, 0, -1))


@pytest.mark.slow
def test_sample_session_drains_end_to_end_with_burst(redis_url, r, tmp_path):
    tasks = sample_tasks(tmp_path, seconds=0.0)
    out = symphony(redis_url, "initialize", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "24 item(s) enqueued for rvm" in out.stdout
    worker = WorkerRun(redis_url, "--burst", "--processes", "2", log_dir=tmp_path, cwd=tmp_path)
    assert worker.wait(120) == 0, worker.output()
    worker.stop()
    spec = load_session(tasks / "block7.yaml")
    for stage in spec.pipeline.stages:
        for item in spec.items:
            path = Path(stage.output_path(spec.root, spec.name, item.id))
            assert path.is_file(), f"missing output {path}"
    final = json.loads(Path(spec.pipeline.stages[-1].output_path(spec.root, spec.name, "row-001")).read_text())
    assert final["row"] == "row-001" and final["clusters"] > 0
    counts = stats(r, spec.name)
    assert all(counts[f"{s}|completed"] == 24 for s in spec.pipeline.stage_names), counts
    assert all(counts[f"{s}|running"] == 0 for s in spec.pipeline.stage_names), counts
    assert r.hlen(K.live(spec.name)) == 0
    assert inflight_total(r) == 0 and r.zcard(K.workers) == 0
    assert not list((Path(spec.root) / spec.name).rglob("*.part-*")), "temporary outputs left behind"


def one_stage_session(tmp_path: Path, handler: str, items, *, params=None, timeout=60, max_attempts=3,
                      backoff=0.05, name="s1", command=None):
    stage = {"name": "work", "pool": "p", "output": "{root}/{session}/{stage}/{item}.json", "timeout": timeout,
             "max_attempts": max_attempts, "retry_backoff": backoff, "params": params or {}}
    if command:
        stage["command"] = command
    else:
        stage["handler"] = handler
    write_pipeline(tmp_path / "pipe.yaml", [stage])
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", items, root=str(tmp_path / "data"))


def handler_pid(markers: Path, pattern: str) -> int:
    """The pid of the process that ran a handler (its executor), from its marker file."""
    wait_until(lambda: markers.is_dir() and list(markers.glob(pattern)), message=f"a marker {pattern}")
    return int(list(markers.glob(pattern))[0].name.rsplit("-", 1)[1])


def worker_of(handler: int) -> int:
    """The worker process whose executor ran a Python handler: the executor's parent."""
    import psutil

    return psutil.Process(handler).ppid()


@pytest.mark.slow
def test_sigkill_mid_task_is_reclaimed_and_completed(engine, r, redis_url, tmp_path):
    session = one_stage_session(tmp_path, "tests.handlers:hang_first_attempt", ["x1"], params={"hang": 60})
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path, heartbeat=0.5)
    try:
        markers = tmp_path / "data" / "markers"
        executor = handler_pid(markers, "started-*-1-*")
        os.kill(worker_of(executor), signal.SIGKILL)  # the worker process, mid-task: its executor dies with it
        output = tmp_path / "data" / "s1" / "work" / "x1.json"
        wait_until(output.is_file, timeout=30, message="the reclaimed task to complete")
        assert json.loads(output.read_text())["attempt"] == 2  # attempt count raised
        wait_until(lambda: stats(r, "s1").get("work|completed") == 1, message="completion accounting")
        counts = stats(r, "s1")
        assert counts["work|reclaimed"] == 1 and counts["work|running"] == 0
        assert r.llen(K.queue("work", "s1")) == 0 and inflight_total(r) == 0
    finally:
        worker.stop()


@pytest.mark.slow
def test_whole_host_lost_is_reclaimed_by_another_worker_within_three_heartbeats(engine, r, redis_url, tmp_path):
    """SIGKILL the supervisor and its children together (a VM that vanishes): another worker
    reclaims the task once the lease lapses."""
    session = one_stage_session(tmp_path, "tests.handlers:hang_first_attempt", ["x1"], params={"hang": 60})
    init(engine, session)
    doomed = WorkerRun(redis_url, "--processes", "1", "--name", "doomed", log_dir=tmp_path, heartbeat=0.5)
    try:
        markers = tmp_path / "data" / "markers"
        wait_until(lambda: markers.is_dir() and list(markers.glob("started-*-1-*")), message="attempt 1 to start")
        rescuer = WorkerRun(redis_url, "--processes", "1", "--name", "rescuer", log_dir=tmp_path, heartbeat=0.5)
        wait_until(lambda: r.zcard(K.workers) == 2, message="the rescuer to register")
        doomed.kill_group()
        import time

        killed_at = time.monotonic()
        output = tmp_path / "data" / "s1" / "work" / "x1.json"
        wait_until(lambda: list(markers.glob("started-*-2-*")), timeout=15, message="the task to run again")
        elapsed = time.monotonic() - killed_at
        assert elapsed <= 3 * 0.5 + 1.0, f"reclaimed after {elapsed:.2f}s"
        wait_until(output.is_file, timeout=15, message="completion elsewhere")
        events = [f for _, f in r.xrange(K.events) if f.get("kind") == "worker_lost"]
        assert events and "doomed" in events[0]["worker"]
    finally:
        doomed.stop()
        if "rescuer" in locals():
            rescuer.stop()


DATED = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


@pytest.mark.slow
def test_always_failing_task_ends_failed_with_its_error_while_others_complete(engine, r, redis_url, tmp_path):
    """...and the log says so: every line dated, tasks named stage:item@session (not their raw
    message), and a burst ends with a summary of what it did."""
    import re

    items = [f"i{n}" for n in range(6)]
    session = one_stage_session(tmp_path, "tests.handlers:fail_some", items, params={"bad": ["i3"]},
                                max_attempts=3, backoff=0.05)
    init(engine, session)
    worker = WorkerRun(redis_url, "--burst", "--processes", "2", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines and all(re.match(DATED, line) for line in lines), log
    assert "work:i3@s1 failed (attempt 1 of 3)" in log and "work:i3@s1 failed after 3 attempt(s)" in log
    assert '{"i":' not in log, "a task named by its raw message"
    assert "burst finished: 5 done, 1 failed, 2 retried, 0 timed out in " in log, log
    counts = stats(r, "s1")
    assert counts["work|completed"] == 5 and counts["work|failed"] == 1 and counts["work|retried"] == 2
    record = json.loads(r.hget(K.outcomes("s1"), "i3"))
    assert record["state"] == "failed" and record["attempts"] == 3
    assert "boom for i3 on attempt 3" in record["error"] and "RuntimeError" in record["stderr"]
    failed = [f for _, f in r.xrange(K.results) if f["st"] == "failed"]
    assert [f["i"] for f in failed] == ["i3"] and "boom" in failed[0]["e"]


@pytest.mark.parametrize("kind", ["python", "command"])
@pytest.mark.slow
def test_stage_timeout_ends_as_timed_out(engine, r, redis_url, tmp_path, kind):
    if kind == "python":
        session = one_stage_session(tmp_path, "tests.handlers:hang", ["slow", "fast"], timeout=1.0,
                                    params={"hang": 30})
    else:
        session = one_stage_session(tmp_path, "", ["slow"], timeout=1.0,
                                    command=["{python}", "-c", "import time; time.sleep(30)"])
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "1", log_dir=tmp_path)
    try:
        wait_until(lambda: stats(r, "s1").get("work|timed_out", 0) >= (2 if kind == "python" else 1), timeout=30,
                   message="the timeout to be recorded")
        record = json.loads(r.hget(K.outcomes("s1"), "slow"))
        assert record["state"] == "timed_out" and "timed out after 1s" in record["error"]
        assert stats(r, "s1")["work|running"] == 0
    finally:
        worker.stop()


@pytest.mark.slow
def test_two_sessions_of_one_role_are_both_served(engine, r, redis_url, tmp_path):
    first = one_stage_session(tmp_path, "tests.handlers:ok", [f"a{n}" for n in range(30)], name="first")
    second = write_session(tmp_path / "second.yaml", "second", "pipe.yaml", [f"b{n}" for n in range(30)],
                           root=str(tmp_path / "data"))
    init(engine, first)
    init(engine, second)
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    order = [f["s"] for _, f in r.xrange(K.results)]
    assert order.count("first") == 30 and order.count("second") == 30
    assert set(order[:10]) == {"first", "second"}, f"one session starved the other: {order[:10]}"


@pytest.mark.slow
def test_sigterm_exits_cleanly_and_leaves_nothing_in_flight(engine, r, redis_url, tmp_path):
    session = one_stage_session(tmp_path, "tests.handlers:ok", [f"i{n}" for n in range(20)], params={"seconds": 0.3})
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "2", "--drain-timeout", "10", log_dir=tmp_path)
    wait_until(lambda: stats(r, "s1").get("work|completed", 0) >= 2, message="some work to complete")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    worker.stop()
    counts = stats(r, "s1")
    assert inflight_total(r) == 0 and r.zcard(K.workers) == 0
    assert counts["work|running"] == 0
    assert counts["work|completed"] + r.llen(K.queue("work", "s1")) == 20  # nothing lost


@pytest.mark.slow
def test_sigterm_hands_back_a_task_that_does_not_finish_in_time(engine, r, redis_url, tmp_path):
    session = one_stage_session(tmp_path, "", ["long"], command=["{python}", "-c", "import time; time.sleep(30)"])
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "1", "--drain-timeout", "0.5", log_dir=tmp_path)
    wait_until(lambda: stats(r, "s1").get("work|running") == 1, message="the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    worker.stop()
    assert json.loads(r.lindex(K.queue("work", "s1"), 0))["a"] == 0  # handed back, attempt not counted
    assert inflight_total(r) == 0 and stats(r, "s1")["work|running"] == 0


@pytest.mark.slow
def test_redis_restart_under_a_running_worker(own_redis, tmp_path):
    url = own_redis.url
    engine = Engine(resolve_redis(url))
    items = [f"i{n}" for n in range(40)]
    session = one_stage_session(tmp_path, "tests.handlers:ok", items, params={"seconds": 0.05})
    init(engine, session)
    worker = WorkerRun(url, "--processes", "2", log_dir=tmp_path, heartbeat=0.5)
    try:
        client = own_redis.client()
        wait_until(lambda: int(client.hget(K.stats("s1"), "work|completed") or 0) >= 5, message="progress")
        own_redis.kill()  # SIGKILL: the AOF keeps what was acknowledged
        wait_until(lambda: "Redis unavailable" in worker.output(), timeout=20, message="the workers to notice")
        own_redis.start()  # same port, same directory: it reloads the AOF
        client = own_redis.client()
        wait_until(lambda: int(client.hget(K.stats("s1"), "work|completed") or 0) >= 40, timeout=60,
                   message="the worker to reconnect and finish")
        out = tmp_path / "data" / "s1" / "work"
        assert sorted(p.stem for p in out.glob("*.json")) == sorted(items)
        log = worker.output()
        assert "Redis unavailable" in log and "Redis is back" in log
        assert log.count("Redis unavailable") <= 2  # logged once per process, not once per retry
    finally:
        worker.stop()
        engine.close()


@pytest.mark.slow
def test_an_idle_worker_blocks_instead_of_polling(own_redis, tmp_path):
    """With nothing to do, a worker process makes about one request a second (a blocking BLPOP on
    its roles' bells, then one look at the ready sets), plus its heartbeat. On a server of its
    own: the counts are the server's, and a process another test left behind must not add to them."""
    import redis as redis_py

    redis_url = own_redis.url
    r = redis_py.Redis.from_url(redis_url, decode_responses=True)
    engine = Engine(resolve_redis(redis_url))
    session = one_stage_session(tmp_path, "tests.handlers:ok", ["only"])
    init(engine, session)
    from tests.helpers import worker_env
    import subprocess
    import time

    log = open(tmp_path / "idle.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "symphony.workers", "--processes", "1", "--heartbeat", "5"],
                            stdout=log, stderr=subprocess.STDOUT, env=worker_env(redis_url), start_new_session=True)
    try:
        wait_until(lambda: int(r.hget(K.stats("s1"), "work|completed") or 0) == 1, message="the one task")
        # the completion's last round trip: the host's health record (then the worker is idle)
        wait_until(lambda: r.hlen(K.host_rates) == 1, message="the host's completion report")

        # Round trips, not commands: INFO counts the commands a Lua script runs inside it too, so
        # count the commands a worker can only send itself (a script never runs EVALSHA or BLPOP).
        top_level = ("evalsha", "eval", "blpop", "hgetall", "hkeys", "lrange", "hget", "hmget", "ping", "llen")

        def total() -> int:
            stats = r.info("commandstats")
            return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in top_level)

        # the enqueue's bell token may still be there: the worker wakes on it once and claims from
        # its session (a claim runs LRANGE, HGET, LLEN inside it): observe from its next BLPOP on
        def blpops() -> int:
            return int(r.info("commandstats").get("cmdstat_blpop", {}).get("calls", 0))

        wait_until(lambda: r.llen(K.bell("work")) == 0, message="the bell's tokens consumed")
        # the ready-set sweep (engine/sweep.py) is the fleet's, once per 30 s whatever its size, not
        # this worker's polling: held off for the window
        r.set(K.sweep_lock, "test", px=60_000)
        first = blpops()
        wait_until(lambda: blpops() > first, timeout=10, message="the worker blocking again")
        start, began = total(), time.monotonic()
        wait_until(lambda: time.monotonic() - began >= 10, timeout=15, interval=0.5)  # observe for 10 s
        elapsed = time.monotonic() - began
        rate = (total() - start) / elapsed
        # about one a second plus the heartbeats; a polling worker makes tens (a heartbeat more or
        # less in the window, or a late wake-up on a loaded machine, must not decide it)
        assert rate <= 2.0, f"an idle worker made {rate:.2f} requests/s"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        engine.close()
        r.close()
        log.close()


# --- handlers that misbehave, in the executor ---------------------------------------------------

def workers_seen(r) -> set[str]:
    return set(r.zrange(K.workers, 0, -1))


@pytest.mark.slow
def test_a_python_handler_holding_the_gil_is_timed_out_on_time_and_never_runs_twice(engine, r, redis_url, tmp_path):
    """A catastrophic regex holds the GIL for minutes with a 2 s stage timeout. In the worker's
    own process it starved the heartbeat and the watchdog: never timed out, its lease lapsed and
    a second worker ran the same task. In the executor it is killed at its timeout; the worker
    keeps beating, nobody reclaims it, and the same worker process goes on with the next task."""
    session = one_stage_session(tmp_path, "tests.handlers:hostile", ["gil-1", "after-1", "after-2"], timeout=2.0,
                                max_attempts=1, params={"gil_size": 34})
    init(engine, session)
    first = WorkerRun(redis_url, "--processes", "1", "--name", "first", log_dir=tmp_path, heartbeat=0.5)
    second = None
    try:
        markers = tmp_path / "data" / "markers"
        wait_until(lambda: markers.is_dir() and list(markers.glob("hostile-work-gil-1-*")), message="the regex to start")
        second = WorkerRun(redis_url, "--processes", "1", "--name", "second", log_dir=tmp_path, heartbeat=0.5)
        wait_until(lambda: len(workers_seen(r)) == 2, message="the second worker to register")
        before = {w for w in workers_seen(r) if w.startswith("first")}
        wait_until(lambda: stats(r, "s1").get("work|timed_out") == 1, timeout=60, message="the timeout")
        wait_until(lambda: stats(r, "s1").get("work|completed") == 2, timeout=60, message="the other items")
        record = json.loads(r.hget(K.outcomes("s1"), "gil-1"))
        assert record["state"] == "timed_out" and "timed out after 2s" in record["error"]
        assert len(list(markers.glob("hostile-work-gil-1-*"))) == 1, "the task ran twice"
        counts = stats(r, "s1")
        assert counts.get("work|reclaimed", 0) == 0 and counts["work|running"] == 0, counts
        assert before <= workers_seen(r), "the worker process was replaced"
        assert "died" not in first.output() and "this process ends" not in first.output()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_systemexit_keyboardinterrupt_and_os_exit_fail_their_task_not_the_worker(engine, r, redis_url, tmp_path):
    items = ["exit-1", "interrupt-1", "die-1", "ok-1", "ok-2", "ok-3"]
    session = one_stage_session(tmp_path, "tests.handlers:hostile", items, max_attempts=2, backoff=0.05)
    init(engine, session)
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path, heartbeat=0.5)
    assert worker.wait(90) == 0, worker.output()
    log = worker.output()
    worker.stop()
    outcomes = {k: json.loads(v) for k, v in r.hgetall(K.outcomes("s1")).items()}
    assert {k: v["state"] for k, v in outcomes.items()} == {"exit-1": "failed", "interrupt-1": "failed",
                                                             "die-1": "failed"}
    assert "SystemExit: 3" in outcomes["exit-1"]["error"] and outcomes["exit-1"]["attempts"] == 2
    assert "KeyboardInterrupt" in outcomes["interrupt-1"]["error"]
    assert "exited with code 7" in outcomes["die-1"]["error"]
    assert stats(r, "s1")["work|completed"] == 3
    assert "died" not in log and "reclaimed" not in log, log


def test_handlers_get_their_task_in_the_environment(engine, r, redis_url, tmp_path):
    """SYMPHONY_SESSION, SYMPHONY_STAGE, SYMPHONY_ITEM, SYMPHONY_ATTEMPT and SYMPHONY_ITEM_INPUT (the
    item's own input, at every stage: a later stage's {input} is the previous stage's output), for
    a Python handler (in its executor's os.environ) and a command, whose stdout is its output."""
    printer = "import json,os; print(json.dumps(dict((k,v) for k,v in sorted(os.environ.items()) if k.startswith('SYMPHONY_'))))"
    stages = [{"name": "py", "pool": "p", "handler": "tests.handlers:handler_env",
               "output": "{root}/{session}/{stage}/{item}.json"},
              {"name": "cmd", "pool": "p", "command": ["{python}", "-c", printer], "stdout": "output",
               "output": "{root}/{session}/{stage}/{item}.json"}]
    write_pipeline(tmp_path / "pipe.yaml", stages)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a1.txt").write_text("the item's own input")
    init(engine, write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", ["a1"], root=str(tmp_path / "data"),
                               input=str(tmp_path / "in" / "{item}.txt")))
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    for stage in ("py", "cmd"):
        seen = json.loads((tmp_path / "data" / "s1" / stage / "a1.json").read_text())
        assert seen == {"SYMPHONY_ATTEMPT": "1", "SYMPHONY_ITEM": "a1", "SYMPHONY_SESSION": "s1",
                        "SYMPHONY_STAGE": stage, "SYMPHONY_ITEM_INPUT": str(tmp_path / "in" / "a1.txt")}, (stage, seen)


def test_a_batch_of_handlers_that_log_print_and_use_the_job_store(engine, r, redis_url, tmp_path):
    """Short tasks run in batches in the executor, whose results the worker reads in one go; a
    handler's log records, what it prints and its job store calls (the executor waits for the
    worker's answer) still reach the worker in the middle of a batch, for every task."""
    items = [f"c{n:02d}" for n in range(40)]
    init(engine, one_stage_session(tmp_path, "tests.handlers:chatty", items, max_attempts=1))
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    for item in items:
        assert json.loads((tmp_path / "data" / "s1" / "work" / f"{item}.json").read_text()) == {"item": item,
                                                                                              "runs": 1}
        assert f"chatty says {item}" in log and f"chatty printed {item}" in log, item
    assert stats(r, "s1")["work|completed"] == 40


def test_a_command_whose_stdout_is_its_output_writes_it_atomically(engine, r, redis_url, tmp_path):
    """sha256sum, jq, gzip -c: the stage's output is what the command prints, renamed into place
    when it exits 0; a command that prints and then fails leaves no output and no temporary file."""
    tool = ("import sys; print('digest of', sys.argv[1]); sys.stdout.flush(); "
            "sys.exit(3 if sys.argv[1].startswith('bad') else 0)")
    session = one_stage_session(tmp_path, "", ["good-1", "bad-1"], max_attempts=1,
                                command=["{python}", "-c", tool, "{item}"])
    pipe = tmp_path / "pipe.yaml"
    import yaml

    data = yaml.safe_load(pipe.read_text())
    data["stages"][0]["stdout"] = "output"
    pipe.write_text(yaml.safe_dump(data))
    init(engine, session)
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    out = tmp_path / "data" / "s1" / "work"
    assert (out / "good-1.json").read_text() == "digest of good-1\n"
    assert not (out / "bad-1.json").exists() and not list(out.glob("*.part-*"))
    assert "exit code 3" in json.loads(r.hget(K.outcomes("s1"), "bad-1"))["error"]


# --- outputs that cannot be written ---------------------------------------------------------------

def test_an_os_error_preparing_an_output_fails_the_task_with_its_message_not_the_worker(engine, r, redis_url,
                                                                                         tmp_path):
    """The data root cannot be created (here: it lies under a file; root itself is allowed
    everything): each task fails with the OS's message; no worker crash-loops on os.makedirs and
    no task ends as "worker lost"."""
    blocker = tmp_path / "not-a-dir"
    session = one_stage_session(tmp_path, "tests.handlers:ok", ["i1", "i2"], max_attempts=2, backoff=0.05)
    text = session.read_text().replace(str(tmp_path / "data"), str(blocker / "data"))
    session.write_text(text)
    init(engine, session)
    blocker.write_text("a file where the data root's parent should be")
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    outcomes = {k: json.loads(v) for k, v in r.hgetall(K.outcomes("s1")).items()}
    assert set(outcomes) == {"i1", "i2"}
    for record in outcomes.values():
        assert record["state"] == "failed" and record["attempts"] == 2
        assert "cannot create the output directory" in record["error"] and "Not a directory" in record["error"]
        assert "lost" not in record["error"]
    assert "died" not in log and "Traceback" not in log, log


@pytest.mark.slow
def test_a_burst_worker_gives_up_on_a_redis_that_never_answers(tmp_path):
    """A server that accepts connections and never replies (a frozen Redis, a black hole): a
    burst worker used to wait forever. It gives up with one clear line and exit 2."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections complete in the backlog; nobody ever answers
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    try:
        worker = WorkerRun(url, "--burst", "--processes", "1", "--wait-for-redis", "2", log_dir=tmp_path)
        assert worker.wait(60) == 2
        log = worker.output()
        worker.stop()
    finally:
        listener.close()
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "gave up" in errors[0], log


# --- what the worker says ------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_hands_back_a_python_task_without_calling_the_worker_lost(engine, r, redis_url, tmp_path):
    """A Python task still running when the drain window closes is handed back; its worker used
    to end itself from its watchdog, and its supervisor then logged "worker lost ... exited with
    code 0" and recorded a worker_lost event for an ordinary stop."""
    session = one_stage_session(tmp_path, "tests.handlers:hang", ["long"], params={"hang": 60})
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "1", "--drain-timeout", "0.5", log_dir=tmp_path)
    wait_until(lambda: stats(r, "s1").get("work|running") == 1, message="the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    log = worker.output()
    worker.stop()
    assert json.loads(r.lindex(K.queue("work", "s1"), 0))["a"] == 0  # handed back, attempt not counted
    assert inflight_total(r) == 0 and stats(r, "s1")["work|running"] == 0
    assert not [f for _, f in r.xrange(K.events) if f.get("kind") == "worker_lost"]
    assert " lost" not in log and "died" not in log, log


# --- the worker's log in Redis, and symphony logs -------------------------------------------------------

@pytest.mark.slow
def test_a_workers_recent_lines_are_in_redis_and_symphony_logs_prints_them(engine, r, redis_url, tmp_path):
    items = [f"i{n}" for n in range(4)]
    session = one_stage_session(tmp_path, "tests.handlers:fail_some", items, params={"bad": ["i2"]},
                                max_attempts=2, backoff=0.05)
    init(engine, session)
    worker = WorkerRun(redis_url, "--processes", "1", "--name", "logged", log_dir=tmp_path)
    try:
        wait_until(lambda: stats(r, "s1").get("work|failed") == 1 and stats(r, "s1").get("work|completed") == 3,
                   message="the session to drain")
        worker_id = next(iter(workers_seen(r)))
        key = K.worker_log(worker_id)
        wait_until(lambda: any("work:i2@s1 failed after 2" in line.message for line in engine.worker_log(worker_id)),
                   message="the failure to reach the worker's log in Redis")
        lines = engine.worker_log(worker_id)
        assert all(line.at_ms > 0 and line.level in ("INFO", "WARNING", "ERROR", "DEBUG") for line in lines)
        assert r.type(key) == "stream" and 0 < r.pttl(key) <= 60_000
        out = symphony(redis_url, "logs", worker_id, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "work:i2@s1 failed after 2 attempt(s)" in out.stdout
        by_name = symphony(redis_url, "logs", "logged", "-n", "2", cwd=tmp_path)
        assert by_name.returncode == 0 and len(by_name.stdout.strip().splitlines()) == 2, by_name
        unknown = symphony(redis_url, "logs", "nobody", cwd=tmp_path)
        assert unknown.returncode == 2 and "no worker 'nobody'" in unknown.stderr
        follow = subprocess.Popen([sys.executable, "-m", "symphony.console.commands", "logs", worker_id, "--follow",
                                   "-n", "1"], cwd=tmp_path, env=worker_env(redis_url), stdout=subprocess.PIPE,
                                  text=True)
        seen: list[str] = []
        import threading

        threading.Thread(target=lambda: seen.extend(iter(follow.stdout.readline, "")), daemon=True).start()
        try:
            wait_until(lambda: seen, message="the last line so far")
            engine.enqueue("s1", "work", [("i2", None)])  # fails again: a new line
            wait_until(lambda: "work:i2@s1 failed (attempt 1 of 2)" in "".join(seen[1:]), timeout=30,
                       message="the follower to print the new line")
        finally:
            follow.kill()
            follow.wait(10)
    finally:
        worker.stop()


def test_worker_options_hold_the_one_redis_config(monkeypatch):
    """WorkerOptions used to re-spell RedisConfig field by field (url, password, username, CA)."""
    from symphony.engine import RedisConfig
    from symphony.workers.cli import build_parser, options_from_args

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SYMPHONY_REDIS_URL", raising=False)
    args = build_parser().parse_args(["--redis", "redis://someone:s3cret-pw@example.org:6380/2", "--burst",
                                      "--log-format", "json", "--wait-for-redis", "5"])
    options = options_from_args(args)
    assert isinstance(options.redis, RedisConfig)
    assert (options.redis.username, options.redis.password) == ("someone", "s3cret-pw")
    assert options.redis.display == "redis://someone:***@example.org:6380/2"
    assert options.log_format == "json" and options.give_up_after_s == 5.0
    assert options_from_args(build_parser().parse_args(["--burst"])).give_up_after_s == 30.0
    assert options_from_args(build_parser().parse_args([])).give_up_after_s is None
    assert "s3cret-pw" not in repr(options)


# --- the frames between a worker and its executor ---------------------------------------------------

@pytest.mark.parametrize("reader_thread", [False, True], ids=["select", "reader-thread"])
def test_frames_are_whole_json_objects_and_a_hostile_sender_cannot_block_or_fool_the_reader(reader_thread):
    """The worker reads what handler code could write: a partial frame never blocks it past its
    timeout, a huge announced length or a non-JSON frame is a protocol error (never unpickled,
    never run). ``reader-thread`` is the path of platforms whose pipes cannot be selected."""
    import struct

    from symphony.workers.channel import Channel, ChannelClosed, ProtocolError

    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    sender, receiver = Channel(r2, w1), Channel(r1, w2, reader_thread=reader_thread)
    try:
        import threading

        big = threading.Thread(target=sender.send, args=({"op": "done", "n": 0, "text": "x" * 300_000},))
        big.start()  # larger than a pipe's buffer: it arrives in parts
        assert receiver.poll(5)["text"] == "x" * 300_000
        big.join(5)
        assert receiver.poll(0.05) is None
        os.write(w1, struct.pack(">I", 100) + b'{"op":')  # a frame that never completes
        partial: list = []  # poll returns at its timeout on a frame that never completes: it does not wait for the rest
        threading.Thread(target=lambda: partial.append(receiver.poll(0.3)), daemon=True).start()
        wait_until(lambda: partial, timeout=30, message="poll to return while a frame is incomplete")
        assert partial == [None]
        os.write(w1, b'"x"}' + b" " * 90)
        assert receiver.poll(5) == {"op": "x"}
        for bad in (struct.pack(">I", 1 << 31), struct.pack(">I", 3) + b"\x80(.", struct.pack(">I", 2) + b"[]"):
            os.write(w1, bad)
            with pytest.raises(ProtocolError):
                receiver.poll(5)
            receiver._buffer.clear()
        sender.close()
        with pytest.raises(ChannelClosed):
            receiver.poll(5)
    finally:
        sender.close()
        receiver.close()
