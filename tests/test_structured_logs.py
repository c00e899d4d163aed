"""``--log-format json`` of the services: the exporter, the Azure Monitor collector and the SLURM
tracker write one JSON object a line, every line, with the Redis password (and Azure's client
secret) never in them, through trouble (Redis gone and back, a refused credential)."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from symphony.engine import EmbeddedRedis, Engine, resolve_redis
from symphony.engine.embedded import free_port
from tests.helpers import ROOT, ProcessRun, wait_until, worker_env
from tests.test_slurm import cluster  # noqa: F401 - the fixture: a real SLURM cluster (skips without one)

PASSWORD = "json-logs-secret-7781"
FIELDS = {"time", "level", "worker", "session", "stage", "item", "attempt", "message"}  # of every line


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as the JSON object it must be."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(data, dict) and FIELDS <= set(data), f"line {number}: {data}"
        out.append(data)
    return out


@pytest.fixture
def locked(tmp_path):
    """A private server that needs the password (AOF on, so a restart keeps its data)."""
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(directory=str(tmp_path / "redis"), password=PASSWORD, appendonly=True)
    server.start()
    yield server
    server.close()


def url_of(server: EmbeddedRedis) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


class Service(ProcessRun):
    """A ``symphony --log-format json ...`` verb as a real process group."""

    def __init__(self, tmp_path: Path, redis_url: str, *args: str, **env: str):
        super().__init__([sys.executable, "-m", "symphony.console.commands", "--log-format", "json", *args],
                         tmp_path / f"service-{free_port()}.log", env=worker_env(redis_url, **env))

    def text(self) -> str:
        return self.output()


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.mark.slow
def test_the_exporters_json_log_through_redis_gone_and_back(locked, tmp_path):
    port = free_port()
    service = Service(tmp_path, url_of(locked), "metrics", "serve", "--port", str(port), "--cache", "0")
    try:
        wait_until(lambda: health(port) == 200, timeout=30, message="the exporter to answer")
        locked.kill()
        wait_until(lambda: health(port) == 503, timeout=30, message="the exporter to see Redis gone")
        locked.start()
        wait_until(lambda: health(port) == 200, timeout=30, message="the exporter to see Redis back")
    finally:
        code = service.stop()
    text = service.text()
    assert code == 0, text
    lines = json_lines(text)
    messages = [line["message"] for line in lines]
    assert any(m.startswith("serving Symphony's figures from Redis redis://:***@") for m in messages), messages
    assert any(m.startswith("cannot read Redis: ") for m in messages), messages
    assert any(m.startswith("Redis answers again") for m in messages) and messages[-1] == "stopped"
    assert {line["level"] for line in lines} >= {"INFO", "WARNING"}
    assert {line["worker"] for line in lines} == {"symphony-exporter"}  # the process; it runs no task
    assert {(line["session"], line["stage"], line["item"], line["attempt"]) for line in lines} == {(None,) * 4}
    assert PASSWORD not in text


def test_the_collectors_json_log_never_holds_a_secret(locked, monkeypatch, capsys):
    """The collector (``symphony metrics collect``) over the recorded Azure, with a credential that
    fails with its secret in the message: every line is JSON, neither secret is in any."""
    from azure.core.exceptions import ClientAuthenticationError

    import symphony.azure.monitor as monitor
    from symphony.azure.monitor.arm import register_azure_secrets
    from symphony.console.commands.main import main as symphony
    from tests.azure_fake import RG, SUB, AzureFake, FakeCredential, standard, transport_for

    secret = "Zq8~json.s3cr3t-Value_0123456789"
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    register_azure_secrets()
    monkeypatch.setenv("REDIS_URL", url_of(locked))
    fake = standard(AzureFake())
    failing = FakeCredential(fail=ClientAuthenticationError(
        f"EnvironmentCredential: Authentication failed: AADSTS7000222: the client secret {secret} is expired"))
    real = monitor.AzureCollector
    monkeypatch.setattr(monitor, "AzureCollector",
                        lambda engine, config, **kw: real(engine, config, credential=failing,
                                                          transport=transport_for(fake), **kw))
    code = symphony(["--log-format", "json", "metrics", "collect", "--once", "--subscription", SUB,
                     "--resource-group", RG])
    out = capsys.readouterr()
    assert code == 1  # the poll failed, and said why
    assert out.out == "", "what the collector reports goes to its log"
    lines = json_lines(out.err)
    assert any(line["level"] == "WARNING" and "AADSTS7000222" in line["message"] for line in lines), lines
    assert any(line["message"].startswith("Azure Monitor: ") for line in lines)
    assert {line["worker"] for line in lines} == {"symphony-metrics"}
    assert secret not in out.err and PASSWORD not in out.err and "***" in out.err


# --- the SLURM tracker, on a real SLURM cluster (tests/slurm_cluster.py) ----------------------------
@pytest.mark.slow
def test_the_slurm_trackers_json_log_through_redis_gone_and_back(cluster, locked, tmp_path):
    url = url_of(locked)
    conf = {"SLURM_CONF": cluster.env["SLURM_CONF"]}
    adopt = subprocess.run([sys.executable, "-m", "symphony.console.commands", "slurm", "adopt", "--tag", "hpc",
                            "--pool", "hpc", "999999"], cwd=ROOT, env=worker_env(url, **conf), capture_output=True,
                           text=True, timeout=60)
    assert adopt.returncode == 0, adopt.stderr
    service = Service(tmp_path, url, "slurm", "track", "--interval", "0.3", **conf)
    engine = Engine(resolve_redis(url))
    try:
        wait_until(lambda: engine.slurm.membership("hpc").get("UNKNOWN") == {"999999"}, timeout=60,
                   message="the tracker to find that SLURM never knew job 999999")
        locked.kill()
        wait_until(lambda: "Redis unavailable" in service.text(), timeout=30, message="the tracker to notice")
        locked.start()
    finally:
        code = service.stop()
        engine.close()
    text = service.text()
    assert code == 0, text
    lines = json_lines(text)
    messages = [line["message"] for line in lines]
    assert messages[0].startswith("tracking SLURM jobs of cluster") and messages[-1].startswith("tracker stopped")
    assert any("1 moved" in m for m in messages), messages
    assert any(line["level"] == "WARNING" and "Redis unavailable" in line["message"] for line in lines)
    assert {line["worker"] for line in lines} == {"symphony-slurm-tracker"}
    assert PASSWORD not in text
