"""symphony deploy: the cloud-init user-data validates with cloud-init's own schema, its systemd
unit with systemd-analyze, and the worker started exactly as the unit says drains a session;
the Windows script comes from one template and the configuration it embeds round-trips."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from symphony.deploy import WorkerService, cloud_init, systemd_unit, windows_script, worker_toml
from symphony.deploy.windows import embedded_config, template
from symphony.engine import ConfigError, EmbeddedRedis, Engine, load_session, resolve_redis, sealer_from, load_key
from symphony.engine.initialize import initialize_session
from tests.helpers import ProcessRun, wait_until, write_pipeline, write_session

tomllib = pytest.importorskip("tomllib", reason="the worker's TOML file needs Python 3.11's tomllib")
WORKER = Path(sys.prefix) / "bin" / "symphony-worker"


def deploy(cli_args: list[str], capsys) -> tuple[int, str, str]:
    from symphony.console.commands.main import main

    code = main(cli_args)
    out = capsys.readouterr()
    return code, out.out, out.err


def generated(capsys, kind: str, *args: str) -> str:
    code, out, err = deploy(["--redis", "redis://redis.internal:6379/0", "deploy", kind, "--pool", "linux", *args],
                            capsys)
    assert code == 0, err
    return out


def unit_directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


# --- cloud-init ---------------------------------------------------------------------------------
def test_the_user_data_passes_cloud_inits_schema(capsys, tmp_path):
    if not shutil.which("cloud-init"):
        pytest.skip("cloud-init is not installed (Debian package cloud-init; .ci/run installs it)")
    text = generated(capsys, "cloud-init", "-n", "4", "--key-vault", "scan-kv", "--package", "redis-symphony==0.1.0")
    assert text.startswith("#cloud-config\n")
    path = tmp_path / "user-data"
    path.write_text(text)
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "Valid cloud-config" in done.stdout, done.stdout + done.stderr
    # and the schema check itself rejects what is wrong
    path.write_text(text.replace("runcmd:\n", "runcmd: 5\nbroken:\n", 1))
    assert subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True,
                          timeout=120).returncode != 0


def test_the_user_data_installs_configures_and_starts_the_service(capsys):
    doc = yaml.safe_load(generated(capsys, "cloud-init", "-n", "4", "--key-vault", "scan-kv"))
    assert doc["users"][1]["name"] == "symphony" and doc["users"][1]["shell"] == "/usr/sbin/nologin"
    files = {f["path"]: f for f in doc["write_files"]}
    config = files["/etc/symphony/worker.toml"]
    assert config["defer"] is True and config["owner"] == "root:symphony" and config["permissions"] == "0640"
    options = tomllib.loads(config["content"])
    assert options == {"redis": "redis://redis.internal:6379/0", "redis-password-file": "/etc/symphony/redis-password",
                       "encryption-key-file": "/etc/symphony/encryption-key", "pool": "linux", "processes": 4,
                       "drain-timeout": 30.0, "log-format": "json",
                       "scheduled-events": "http://169.254.169.254/metadata/scheduledevents"}
    assert "ExecStart=/opt/symphony/venv/bin/symphony-worker --config /etc/symphony/worker.toml" in \
        files["/etc/systemd/system/symphony-worker.service"]["content"]
    commands = [" ".join(c) for c in doc["runcmd"]]
    assert "/opt/symphony/venv/bin/pip install --quiet --upgrade redis-symphony" in commands
    assert "install -d -m 0750 -o symphony -g symphony /var/lib/symphony" in commands  # the unit's ~
    assert commands[-1] == "systemctl enable --now symphony-worker.service"
    # the secret files, from Key Vault before every start, as root (+), for the service user
    unit = unit_directives(files["/etc/systemd/system/symphony-worker.service"]["content"])
    assert unit["ExecStartPre"] == [
        f"+/opt/symphony/venv/bin/python -m symphony.deploy.keyvault --vault scan-kv --secret {secret} --file "
        f"/etc/symphony/{name} --owner symphony --tries 5"
        for secret, name in (("symphony-redis-password", "redis-password"),
                             ("symphony-encryption-key", "encryption-key"))]


def test_what_deploy_prints_holds_no_secret(capsys):
    code, out, err = deploy(["--redis", "redis://:hunter2@redis.internal:6379/0", "deploy", "cloud-init",
                             "--pool", "linux"], capsys)
    assert code == 2 and "holds a password" in err and "hunter2" not in out + err
    code, out, err = deploy(["deploy", "systemd", "--pool", "linux"], capsys)
    assert code == 2 and "name the Redis the VMs' workers reach" in err
    code, out, err = deploy(["--redis", "redis://h:6379/0", "deploy", "systemd", "--pool", "linux",
                             "--worker-option", "procesess=2"], capsys)
    assert code == 2 and "unknown option 'procesess'" in err and out == ""


def test_the_user_data_with_a_redis_url_file_passes_cloud_inits_schema(capsys, tmp_path):
    """--redis-url-file: the workers read the URL (its password too) from a file on the VM; the
    user-data names the file and holds no URL; with --key-vault the unit fills the file."""
    code, text, err = deploy(["deploy", "cloud-init", "--pool", "linux", "-n", "4", "--key-vault", "scan-kv",
                              "--redis-url-file", "/etc/symphony/redis-url"], capsys)
    assert code == 0, err
    files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
    options = tomllib.loads(files["/etc/symphony/worker.toml"])
    assert options["redis-url-file"] == "/etc/symphony/redis-url" and "redis" not in options
    assert "redis-password-file" not in options  # the password is in the URL
    unit = unit_directives(files["/etc/systemd/system/symphony-worker.service"])
    assert unit["ExecStartPre"][0] == ("+/opt/symphony/venv/bin/python -m symphony.deploy.keyvault --vault scan-kv "
                                       "--secret symphony-redis-url --file /etc/symphony/redis-url --owner symphony "
                                       "--tries 5")
    assert "redis://" not in text and "rediss://" not in text
    # the URL or its file, not both; and the file is the VMs' (after the verb)
    code, _, err = deploy(["--redis", "redis://h:6379/0", "deploy", "cloud-init", "--pool", "linux",
                           "--redis-url-file", "/etc/symphony/redis-url"], capsys)
    assert code == 2 and "not both" in err
    code, _, err = deploy(["--redis-url-file", str(tmp_path / "mine"), "deploy", "cloud-init", "--pool", "linux"],
                          capsys)
    assert code == 2 and "after 'deploy KIND'" in err
    if not shutil.which("cloud-init"):
        pytest.skip("cloud-init is not installed (Debian package cloud-init; .ci/run installs it)")
    path = tmp_path / "user-data"
    path.write_text(text)
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "Valid cloud-config" in done.stdout, done.stdout + done.stderr


# --- systemd ------------------------------------------------------------------------------------
def test_the_unit_passes_systemd_analyze_verify(capsys, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    if not WORKER.is_file():
        pytest.skip(f"{WORKER} is not installed (pip install -e .)")
    unit = generated(capsys, "systemd", "--venv", sys.prefix, "-n", "2", "--drain-timeout", "45",
                     "--key-vault", "scan-kv")
    assert "ExecStartPre=+" in unit
    d = unit_directives(unit)
    assert d["Restart"] == ["on-failure"] and d["KillMode"] == ["mixed"] and d["Nice"] == ["10"]
    assert d["TimeoutStopSec"] == ["90s"]  # the drain window, the supervisor's 15 s grace, a 30 s margin
    assert d["StandardOutput"] == ["journal"] and d["User"] == ["symphony"]
    path = tmp_path / "symphony-worker.service"

    def verify(text: str) -> subprocess.CompletedProcess:
        path.write_text(text)
        return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120)

    done = verify(unit)
    assert done.returncode == 0 and path.name not in done.stderr, done.stderr
    # the check sees a broken directive (it only warns: the test reads its warnings)
    broken = verify(unit.replace("KillMode=mixed", "KillMode=gently"))
    assert "KillMode" in broken.stderr or "kill mode" in broken.stderr


@pytest.mark.slow
def test_the_worker_started_exactly_as_the_unit_says_drains_a_session(capsys, tmp_path):
    """ExecStart and Environment of the generated unit, the worker's file from the generated
    user-data, the Redis password and key in files only the service user reads; systemd's stop
    (SIGTERM to the main process, KillMode=mixed) ends it cleanly within TimeoutStopSec."""
    if not WORKER.is_file():
        pytest.skip(f"{WORKER} is not installed (pip install -e .)")
    password = "unit-test-redis-password-7f3a"
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(password=password, directory=str(tmp_path / "redis"))
    server.start()
    run = None
    try:
        secrets = tmp_path / "etc"
        secrets.mkdir(mode=0o750)
        (secrets / "redis-password").write_text(password + "\n")
        (secrets / "encryption-key").write_text(os.urandom(32).hex() + "\n")
        for name in ("redis-password", "encryption-key"):
            (secrets / name).chmod(0o600)
        url = f"redis://127.0.0.1:{server.port}/0"
        code, text, err = deploy(["--redis", url, "deploy", "cloud-init", "--pool", "linux", "-n", "2",
                                  "--venv", sys.prefix, "--config-path", str(secrets / "worker.toml"),
                                  "--vm-password-file", str(secrets / "redis-password"),
                                  "--vm-key-file", str(secrets / "encryption-key"), "--no-scheduled-events"], capsys)
        assert code == 0, err
        files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
        (secrets / "worker.toml").write_text(files[str(secrets / "worker.toml")])
        unit = unit_directives(files["/etc/systemd/system/symphony-worker.service"])
        argv = shlex.split(unit["ExecStart"][0])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # what systemd gives
        for assignment in unit["Environment"]:
            env.update(dict(shlex.split(a)[0].split("=", 1) for a in [assignment]))

        stage = {"name": "work", "pool": "linux", "command": ["{python}", "-c", "import json; print(json.dumps(1))"],
                 "stdout": "output", "output": "{root}/{session}/{stage}/{item}.json"}
        write_pipeline(tmp_path / "pipe.yaml", [stage])
        items = [f"i{n}" for n in range(8)]
        session = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", items, root=str(tmp_path / "data"))
        engine = Engine(resolve_redis(url, password_file=str(secrets / "redis-password")),
                        sealer=sealer_from(load_key(str(secrets / "encryption-key"))))
        initialize_session(engine, load_session(session))
        run = ProcessRun(argv, tmp_path / "unit.log", env=env, cwd=tmp_path)
        wait_until(lambda: all((tmp_path / "data" / "s1" / "work" / f"{i}.json").is_file() for i in items),
                   timeout=90, message="the session to drain")
        assert password not in " ".join(argv) and password not in json.dumps(env)
        run.process.send_signal(signal.SIGTERM)  # systemctl stop, KillMode=mixed: the main process only
        stop_timeout = float(unit["TimeoutStopSec"][0].rstrip("s"))
        assert run.process.wait(timeout=stop_timeout) == 0, run.output()
        out = run.output()
        assert password not in out and '"message"' in out  # JSON lines for journald
        engine.close()
    finally:
        if run is not None:
            run.stop()
        server.close()


# a command handler that reports what it and its parent (the worker process) show in /proc
PROC_REPORT = """\
import json, os
def read(pid, what):
    try:
        with open("/proc/%s/%s" % (pid, what), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return "unreadable: %s" % exc
print(json.dumps(dict((str(pid), dict((what, read(pid, what)) for what in ("cmdline", "environ")))
                      for pid in (os.getpid(), os.getppid()))))
"""  # no braces: they would be the stage's placeholders


def _proc_text(pid: int) -> str:
    out = []
    for what in ("cmdline", "environ"):
        try:
            out.append(Path(f"/proc/{pid}/{what}").read_bytes().decode("utf-8", "replace"))
        except OSError:
            pass
    return "\n".join(out)


@pytest.mark.slow
def test_a_worker_reading_its_url_from_a_file_drains_a_session_and_shows_the_password_nowhere(capsys, tmp_path):
    """deploy cloud-init --redis-url-file: the worker started with the unit's ExecStart and
    Environment reads the URL, password included, from a file only its user reads, drains a session
    on a password-protected Redis; the password is in no user-data, unit, command line or
    environment of the worker or of its handlers (their /proc/<pid>/cmdline and environ)."""
    if not WORKER.is_file():
        pytest.skip(f"{WORKER} is not installed (pip install -e .)")
    if not Path("/proc/self/environ").is_file():
        pytest.skip("needs Linux's /proc")
    password = "url-file-redis-password-41c9"
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(password=password, directory=str(tmp_path / "redis"))
    server.start()
    run = None
    try:
        secrets = tmp_path / "etc"
        secrets.mkdir(mode=0o750)
        url_file = secrets / "redis-url"
        url_file.write_text(f"redis://:{password}@127.0.0.1:{server.port}/0\n")
        url_file.chmod(0o600)
        code, text, err = deploy(["deploy", "cloud-init", "--pool", "linux", "-n", "2", "--venv", sys.prefix,
                                  "--config-path", str(secrets / "worker.toml"), "--redis-url-file", str(url_file),
                                  "--no-scheduled-events"], capsys)
        assert code == 0, err
        assert password not in text and str(server.port) not in text
        files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
        (secrets / "worker.toml").write_text(files[str(secrets / "worker.toml")])
        unit = unit_directives(files["/etc/systemd/system/symphony-worker.service"])
        argv = shlex.split(unit["ExecStart"][0])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # what systemd gives
        for assignment in unit["Environment"]:
            env.update(dict(shlex.split(a)[0].split("=", 1) for a in [assignment]))

        stage = {"name": "work", "pool": "linux", "command": ["{python}", "-c", PROC_REPORT],
                 "stdout": "output", "output": "{root}/{session}/{stage}/{item}.json"}
        write_pipeline(tmp_path / "pipe.yaml", [stage])
        items = [f"i{n}" for n in range(6)]
        session = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", items, root=str(tmp_path / "data"))
        engine = Engine(resolve_redis(url_file=str(url_file)))
        initialize_session(engine, load_session(session))
        run = ProcessRun(argv, tmp_path / "unit.log", env=env, cwd=tmp_path)
        outputs = [tmp_path / "data" / "s1" / "work" / f"{i}.json" for i in items]
        wait_until(lambda: all(p.is_file() for p in outputs), timeout=90, message="the session to drain")
        # the worker's processes, while they run: the supervisor and its children
        worker_pids = [run.process.pid] + [w.pid for w in engine.snapshot(events=0).workers]
        shown = {pid: _proc_text(pid) for pid in worker_pids}
        assert all(shown.values()) and not [pid for pid, t in shown.items() if password in t]
        reports = [json.loads(p.read_text()) for p in outputs]
        for report in reports:
            handler, parent = report.values()  # the handler and its parent, the worker process
            assert "SYMPHONY_ITEM=" in handler["environ"] and "symphony" in parent["cmdline"], report
            for pid, proc in report.items():
                assert proc["cmdline"] and not proc["cmdline"].startswith("unreadable"), (pid, proc)
                assert password not in proc["cmdline"] and password not in proc["environ"], pid
        assert password not in " ".join(argv) and password not in json.dumps(env)
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(timeout=float(unit["TimeoutStopSec"][0].rstrip("s"))) == 0, run.output()
        out = run.output()
        assert password not in out and "may be read by other users" not in out
        engine.close()
    finally:
        if run is not None:
            run.stop()
        server.close()


# --- Windows ------------------------------------------------------------------------------------
def test_the_windows_script_comes_from_one_template_and_its_config_round_trips(capsys, tmp_path):
    code, out, err = deploy(["--redis", "rediss://redis.internal:6380/0", "deploy", "windows", "--pool", "windows",
                             "-n", "4", "--key-vault", "scan-kv", "--package", "redis-symphony==0.1.0",
                             "--worker-option", "prefetch=1", "--worker-option", "name=win's box"], capsys)
    assert code == 0, err
    placeholders = set(__import__("re").findall(r"\{\{([a-z_]+)\}\}", template()))
    assert placeholders and "{{" not in out  # every placeholder of the one template filled
    assert out.count("$WorkerConfig = @'") == 1
    config = tomllib.loads(embedded_config(out))
    assert config == {"redis": "rediss://redis.internal:6380/0",
                      "redis-password-file": r"C:\ProgramData\Symphony\secrets\redis-password",
                      "encryption-key-file": r"C:\ProgramData\Symphony\secrets\encryption-key",
                      "pool": "windows", "processes": 4, "drain-timeout": 30.0, "log-format": "json",
                      "scheduled-events": "http://169.254.169.254/metadata/scheduledevents",
                      "prefetch": 1, "name": "win's box"}
    # what the worker itself reads from it
    from symphony.workers.cli import options_from_args, parse

    path = tmp_path / "CustomData.bin"
    path.write_text(embedded_config(out))
    args = parse(["--config", str(path)], env={})
    assert args.pool == "windows" and args.processes == 4 and args.prefetch == 1
    assert "Register-ScheduledTask -TaskName $TaskName" in out and "-AtStartup" in out
    assert "symphony.deploy.keyvault --vault 'scan-kv' --secret 'symphony-redis-password'" in out
    assert "'redis-symphony==0.1.0'" in out


def test_a_generated_config_is_checked_against_the_worker():
    service = WorkerService(pool="linux", redis_url="redis://h:6379/0", extra={"processes": "four"})
    with pytest.raises(ConfigError, match="processes: expected an integer"):
        worker_toml(service)
    with pytest.raises(ConfigError, match="--pool"):
        WorkerService(pool="bad pool", redis_url="redis://h:6379/0")


# --- Key Vault at boot ----------------------------------------------------------------------------
class _Azure(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).seen.append((self.path, dict(self.headers)))
        if self.path.startswith("/metadata/identity/oauth2/token") and self.headers.get("Metadata") == "true":
            body = {"access_token": "vault-token", "expires_in": "3600"}
        elif self.path.startswith("/secrets/symphony-redis-password") and \
                self.headers.get("Authorization") == "Bearer vault-token":
            body = {"value": "the-password-from-the-vault", "id": "x"}
        else:
            self.send_response(403)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_boot_step_writes_a_key_vault_secret_to_a_private_file(tmp_path, capsys):
    from symphony.deploy.keyvault import main

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Azure)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        target = tmp_path / "etc" / "redis-password"
        assert main(["--vault", "scan-kv", "--secret", "symphony-redis-password", "--file", str(target),
                     "--imds", base, "--vault-url", base]) == 0
        assert target.read_text() == "the-password-from-the-vault\n"
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        assert "the-password-from-the-vault" not in capsys.readouterr().out
        assert main(["--vault", "scan-kv", "--secret", "other", "--file", str(tmp_path / "x"), "--imds", base,
                     "--vault-url", base, "--tries", "1"]) == 1
        assert "answered 403" in capsys.readouterr().err
    finally:
        server.shutdown()
