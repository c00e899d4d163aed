"""The Azure Monitor collector, offline: the real azure-monitor-querymetrics / azure-core client code
runs over an injected transport answering recorded JSON. Asserts on the requests it sends and on
what lands in Redis and in the analysis files; 429, 401, 404 and no configuration never crash it
and never print a secret."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import csv
import json
import logging
import subprocess
import sys
from datetime import datetime

import pytest

from symphony.azure.monitor import AzureCollector, AzureMonitorConfig
from symphony.azure.monitor.problems import AUTH, NOT_FOUND, THROTTLED, classify, retry_after_s
from symphony.azure.monitor.sinks import FileSink
from symphony.engine import ConfigError
from symphony.engine.metrics import parse_azure_member
from tests.azure_fake import (RECORDED_END, RG, SUB, TOKEN, AzureFake, FakeCredential, recorded, standard,
                              transport_for, vmss_id)
from tests.helpers import ROOT, wait_until, worker_env

NOW = RECORDED_END + 30  # 10:15:30Z on the recorded day: the window asked is 10:00-10:15
METRIC_NAMES = "Percentage CPU,Disk Read Bytes,Disk Write Bytes,Network In Total,Network Out Total"


def make(engine, fake: AzureFake, *, clock=lambda: NOW, credential=None, **config) -> AzureCollector:
    cfg = AzureMonitorConfig(subscription=SUB, resource_group=RG, **config)
    return AzureCollector(engine, cfg, credential=credential or FakeCredential(), transport=transport_for(fake),
                          clock=clock)


def recorded_cpu(scale_set: str, per_instance: bool) -> dict:
    """(instance, minute) -> average CPU, straight from the recorded answer."""
    name = "metrics_batch_instances.json" if per_instance else "metrics_batch_totals.json"
    out = {}
    for value in recorded(name)["values"]:
        if not value["resourceid"].endswith("/" + scale_set):
            continue
        cpu = next(m for m in value["value"] if m["name"]["value"] == "Percentage CPU")
        for series in cpu["timeseries"]:
            instance = series["metadatavalues"][0]["value"] if series["metadatavalues"] else ""
            for point in series["data"]:
                if "average" in point:
                    t = datetime.fromisoformat(point["timeStamp"].replace("Z", "+00:00")).timestamp()
                    out[(instance, t)] = point["average"]
    return out


def test_one_poll_sends_the_expected_requests_and_stores_the_minutes(engine, r):
    fake = standard(AzureFake())
    credential = FakeCredential()
    result = make(engine, fake, credential=credential).poll()
    assert result.ok, result.problems
    # discovery: one ARM LIST of the resource group's scale sets
    (arm,) = fake.arm_calls()
    assert arm.method == "GET" and arm.path == (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                                                "Microsoft.Compute/virtualMachineScaleSets")
    assert arm.params == {"api-version": "2024-07-01"} and arm.headers["Authorization"] == f"Bearer {TOKEN}"
    # metrics: one batch call for the totals and one split by instance, on the regional endpoint
    totals, per_vm = fake.metric_calls()
    for call in (totals, per_vm):
        assert call.method == "POST" and call.host == "westeurope.metrics.monitor.azure.com"
        assert call.path == f"/subscriptions/{SUB}/metrics:getBatch"
        assert call.params["api-version"] == "2024-02-01"
        assert call.params["metricnamespace"] == "Microsoft.Compute/virtualMachineScaleSets"
        assert call.params["metricnames"] == METRIC_NAMES
        assert call.params["starttime"].startswith("2025-06-02T10:00:00") and call.params["endtime"].startswith(
            "2025-06-02T10:15:00")
        assert call.params["interval"] == "PT1M" and call.params["aggregation"] == "Average,Total"
        assert sorted(call.resource_ids) == sorted([vmss_id("linux-vmss"), vmss_id("win-vmss")])
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "filter" not in totals.params and "top" not in totals.params
    assert per_vm.params["filter"] == "VMName eq '*'" and per_vm.params["top"] == "1000"
    assert ("https://management.azure.com/.default",) in credential.scopes
    assert ("https://metrics.monitor.azure.com/.default",) in credential.scopes
    # Redis: 14 minutes per scale set (the 15th has no data yet), the instances split out
    key = K.metric_series("azure", "win-vmss")
    members = [parse_azure_member(m, "win-vmss", instance=False) for m in r.zrange(key, 0, -1)]
    expected = recorded_cpu("win-vmss", per_instance=False)
    assert len(members) == 14 == len(expected)
    assert {("", s.time): s.cpu for s in members} == expected
    assert {s.instances for s in members} == {2}
    assert all(s.disk_read is not None and s.net_out is not None for s in members)
    vms = [parse_azure_member(m, "win-vmss", instance=True) for m in r.zrange(key + ":vm", 0, -1)]
    assert {(s.instance, s.time): s.cpu for s in vms} == recorded_cpu("win-vmss", per_instance=True)
    assert {s.instance for s in vms} == {"win-vmss_0", "win-vmss_3"}
    assert r.zcard(K.metric_series("azure", "linux-vmss", "vm")) == 14
    assert sorted(r.zrange(K.metric_index, 0, -1)) == ["azure|linux-vmss", "azure|win-vmss"]
    assert result.written == 14 * 2 + 14 * 3 and result.scale_sets == ("linux-vmss", "win-vmss")


def test_a_second_poll_replaces_the_window_without_duplicates(engine, r):
    fake = standard(AzureFake())
    now = [NOW]
    collector = make(engine, fake, clock=lambda: now[0])
    collector.poll()
    now[0] += 60
    collector.poll()
    assert len(fake.arm_calls()) == 1  # discovery is not redone every poll
    assert r.zcard(K.metric_series("azure", "win-vmss")) == 15  # one more minute, nothing twice
    assert r.zcard(K.metric_series("azure", "win-vmss", "vm")) == 30


def test_the_console_reader_gets_azure_data_when_fresh(engine, r):
    import time

    fake = standard(AzureFake())
    collector = make(engine, fake, clock=time.time)
    collector.run(once=True)
    win = next(x for x in engine.scale_set_cpu() if x.name == "win-vmss")
    assert win.source == "azure monitor" and win.instances == 2 and len(win.points) == 14
    latest = max(recorded_cpu("win-vmss", per_instance=False).items(), key=lambda kv: kv[0][1])[1]
    assert win.current == round(latest, 2) and win.points[-1][1] == round(latest, 2)
    assert win.points[-1][0] > time.time() - 3 * 60  # shifted to now by the fake, as a live answer would be
    status = engine.metrics_status()
    assert status.state == "ok" and status.scale_sets == ("linux-vmss", "win-vmss") and status.interval_s == 60


def test_named_scale_sets_and_a_missing_one(engine, r, caplog):
    fake = standard(AzureFake())
    collector = make(engine, fake, scale_sets=("win-vmss", "gone-vmss"))
    with caplog.at_level(logging.INFO, logger="symphony.metrics"):
        for _ in range(3):
            result = collector.run(once=True)
            delay = collector.next_delay(result)
    gets = [s.path.rsplit("/", 1)[1] for s in fake.arm_calls()]
    assert gets[:2] == ["win-vmss", "gone-vmss"]
    assert [p.kind for p in result.problems] == [NOT_FOUND]
    message = result.problems[0].message
    assert message == f"scale set gone-vmss not found in resource group {RG} (subscription {SUB})"
    # one clear message, not one per poll; the scale sets that exist are still collected at their pace
    assert sum(message in rec.getMessage() for rec in caplog.records) == 1
    assert result.scale_sets == ("win-vmss",) and delay == 60
    assert all(call.resource_ids == [vmss_id("win-vmss")] for call in fake.metric_calls())
    assert engine.metrics_status().state == "degraded" and message in engine.metrics_status().message


def test_a_missing_resource_group_is_one_message_and_a_growing_backoff(engine, r, caplog):
    fake = standard(AzureFake())
    fake.route("GET", r"/virtualMachineScaleSets$", (404, {}, "arm_404_group.json"))
    collector = make(engine, fake)
    delays = []
    with caplog.at_level(logging.INFO, logger="symphony.metrics"):
        for _ in range(4):
            result = collector.run(once=True)
            delays.append(collector.next_delay(result))
    assert result.problems[0].message == f"resource group {RG} not found in subscription {SUB}"
    assert sum("not found" in rec.getMessage() for rec in caplog.records) == 1
    assert delays == sorted(delays) and delays[-1] > delays[0] and delays[-1] <= 900
    assert not fake.metric_calls() and engine.metrics_status().state == "error"


def test_throttling_honours_retry_after_then_recovers(engine, r, caplog):
    fake = standard(AzureFake())
    throttled = [True]

    def metrics(seen):
        if throttled[0]:
            return 429, {"Retry-After": "17"}, "metrics_429.json"
        return 200, {}, ("metrics_batch_instances.json" if seen.params.get("filter") else "metrics_batch_totals.json")

    fake.route("POST", r"/metrics:getBatch$", metrics)
    collector = make(engine, fake)
    with caplog.at_level(logging.INFO, logger="symphony.metrics"):
        result = collector.poll()
        assert [p.kind for p in result.problems] == [THROTTLED] and result.problems[0].retry_after_s == 17
        assert len(fake.metric_calls()) == 1  # no retry storm: the per-instance call was not even tried
        assert collector.next_delay(result) >= 17
        collector._report(result, 17.0)
        assert "429" in engine.metrics_status().message and "Retry-After" in engine.metrics_status().message
        fake.route("POST", r"/metrics:getBatch$", (429, {"Retry-After": "120"}, "metrics_429.json"))
        assert collector.next_delay(collector.poll()) >= 120
        throttled[0] = False
        fake.route("POST", r"/metrics:getBatch$", metrics)
        result = collector.run(once=True)
    assert result.ok and collector.next_delay(result) == 60
    messages = [rec.getMessage() for rec in caplog.records]
    assert sum("429" in m for m in messages) == 1 and any("collecting again" in m for m in messages)


def test_an_expired_token_is_one_clear_message(engine, r):
    fake = standard(AzureFake())
    fake.route("POST", r"/metrics:getBatch$", (401, {"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                                                     'windows.net/tenant", error="invalid_token", error_description='
                                                     '"The access token has expired."'}, "metrics_401_expired.json"))
    collector = make(engine, fake)
    result = collector.run(once=True)
    (problem,) = result.problems
    assert problem.kind == AUTH and "expired" in problem.message and "az login" in problem.message
    assert "ExpiredAuthenticationToken" in problem.message
    assert TOKEN not in problem.message and collector.next_delay(result) >= 12
    assert engine.metrics_status().state == "error"


def test_a_credential_failure_never_prints_the_client_secret(engine, r, capsys, caplog, monkeypatch):
    from azure.core.exceptions import ClientAuthenticationError

    secret = "Zq8~s3cr3t.Value-for-the-test_0123456789"
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    from symphony.azure.monitor.arm import register_azure_secrets

    register_azure_secrets()
    fake = standard(AzureFake())
    failing = FakeCredential(fail=ClientAuthenticationError(
        f"EnvironmentCredential: Authentication failed: AADSTS7000222: The provided client secret keys for app "
        f"'0000' are expired. (secret {secret})"))
    collector = make(engine, fake, credential=failing)
    with caplog.at_level(logging.DEBUG, logger="symphony.metrics"):
        result = collector.run(once=True)
    (problem,) = result.problems
    assert problem.kind == AUTH and "AADSTS7000222" in problem.message
    everything = problem.message + capsys.readouterr().err + caplog.text + json.dumps(r.hgetall(
        K.metric_collector))
    assert secret not in everything and "***" in problem.message
    assert not fake.seen  # nothing was sent without a token


def test_a_missing_scale_set_in_a_batch_is_found_one_by_one(engine, r):
    fake = standard(AzureFake())

    def metrics(seen):
        if vmss_id("linux-vmss") in seen.resource_ids:
            return 404, {}, "metrics_404.json"  # the batch API fails the whole batch for one missing resource
        return 200, {}, ("metrics_batch_instances.json" if seen.params.get("filter") else "metrics_batch_totals.json")

    fake.route("POST", r"/metrics:getBatch$", metrics)
    collector = make(engine, fake)
    result = collector.poll()
    assert result.scale_sets == ("win-vmss",)
    assert [p.kind for p in result.problems] == [NOT_FOUND] and "linux-vmss" in result.problems[0].message
    assert r.zcard(K.metric_series("azure", "win-vmss")) == 14 and not r.exists(K.metric_series("azure", "linux-vmss"))
    assert "linux-vmss" in collector.missing  # looked up again at the next poll


def test_analysis_files_get_each_settled_minute_once(engine, tmp_path):
    fake = standard(AzureFake())
    jsonl, csv_path = tmp_path / "out" / "vm.jsonl", tmp_path / "out" / "vm.csv"
    now = [NOW]
    collector = make(engine, fake, clock=lambda: now[0], jsonl=str(jsonl), csv=str(csv_path), redis=False)
    assert collector.engine is None
    first = collector.poll()
    # minutes younger than 5 minutes may still be revised by Azure: not written yet
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert first.rows == len(rows) and rows
    assert max(row["ts"] for row in rows) + 60 <= NOW - 300
    now[0] += 120
    collector.poll()
    # a restarted collector (new sink) resumes after the newest minute in the files
    again = make(engine, fake, clock=lambda: now[0], jsonl=str(jsonl), csv=str(csv_path), redis=False)
    again.poll()
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    keys = [(row["scale_set"], row["instance"], row["ts"]) for row in rows]
    assert len(keys) == len(set(keys)), "a minute was written twice"
    assert {row["scale_set"] for row in rows} == {"win-vmss", "linux-vmss"}
    win = [row for row in rows if row["scale_set"] == "win-vmss" and row["instance"] is None]
    assert win[0]["time"].endswith("Z") and win[0]["region"] == "westeurope" and win[0]["instances"] == 2
    columns = {"cpu_percent", "disk_read_bytes", "disk_write_bytes", "network_in_bytes", "network_out_bytes"}
    assert columns <= set(win[0])
    with open(csv_path, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(row["scale_set"], row["instance"] or None, int(row["ts"])) for row in table] == keys
    assert FileSink(str(jsonl), None, 300).done == FileSink(None, str(csv_path), 300).done


def test_collector_runs_in_a_thread_for_the_console(engine, r):
    import time

    fake = standard(AzureFake())
    messages = []
    collector = AzureCollector(engine, AzureMonitorConfig(subscription=SUB, resource_group=RG, interval_s=10),
                               credential=FakeCredential(), transport=transport_for(fake),
                               on_message=lambda level, text: messages.append((level, text)))
    thread = collector.start()
    try:
        wait_until(lambda: engine.metrics_status() is not None, message="the collector's first poll")
        assert {x.source for x in engine.scale_set_cpu()} == {"azure monitor"}
    finally:
        started = time.monotonic()
        collector.stop()
    assert not thread.is_alive() and time.monotonic() - started < 5


def test_no_configuration_means_the_collector_is_off(engine, redis_url):
    config = AzureMonitorConfig.from_env({})
    assert not config.configured and "subscription" in config.off_reason and "resource group" in config.off_reason
    assert AzureCollector.from_env(engine, env={}) is None
    with pytest.raises(ConfigError, match="off"):
        AzureCollector(engine, config)
    env = {k: v for k, v in worker_env(redis_url).items() if not k.startswith("AZURE_")}
    out = subprocess.run([sys.executable, "-m", "symphony.console.commands", "metrics", "collect", "--once"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "collector is off" in out.stderr and "host CPU instead" in out.stderr


def test_configuration_from_the_environment():
    env = {"AZURE_SUBSCRIPTION_ID": SUB, "SYMPHONY_AZURE_RESOURCE_GROUP": RG,
           "SYMPHONY_AZURE_SCALE_SETS": "win-vmss, linux-vmss", "SYMPHONY_AZURE_INTERVAL": "2m"}
    config = AzureMonitorConfig.from_env(env)
    assert config.configured and config.scale_sets == ("win-vmss", "linux-vmss") and config.interval_s == 120
    assert AzureMonitorConfig.from_env(env, scale_sets=("a",)).scale_sets == ("a",)
    with pytest.raises(ConfigError):
        AzureMonitorConfig.from_env(env, interval_s=1)


def test_retry_after_forms_and_classification():
    assert retry_after_s({"Retry-After": "17"}) == 17
    assert retry_after_s({"x-ms-retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_s({}) is None
    from azure.core.exceptions import ServiceRequestError

    problem = classify(ServiceRequestError("Connection refused"), "reading metrics of win-vmss")
    assert problem.kind == "network" and "cannot reach Azure" in problem.message


def test_the_engine_works_without_the_azure_packages():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'azure' or name.startswith('azure.'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import symphony.engine, symphony.workers.process\n"
            "from symphony.azure.monitor import AzureCollector, AzureMonitorConfig\n"
            "from symphony.engine import ConfigError\n"
            "config = AzureMonitorConfig(subscription='s', resource_group='g')\n"
            "try:\n"
            "    AzureCollector(None, config)\n"
            "except ConfigError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'redis-symphony[azure]'" in out.stdout


@pytest.mark.slow
def test_metrics_show_says_where_the_cpu_comes_from(engine, r, redis_url):
    from symphony.engine.metrics import record_host_sample

    sec, usec = r.time()
    bucket = (sec * 1000 // 30_000) * 30_000
    record_host_sample(r, engine.keys, "windows", "vm1", bucket, {"host_cpu": 42, "host_mem": 50, "cpus": 4})
    out = subprocess.run([sys.executable, "-m", "symphony.console.commands", "metrics", "show", "--hosts"], cwd=ROOT,
                         env=worker_env(redis_url), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "collector: not running" in out.stdout and "worker heartbeats" in out.stdout
    assert "windows" in out.stdout and "42%" in out.stdout and "vm1" in out.stdout
    env = {k: v for k, v in worker_env(redis_url).items() if k != "REDIS_URL"}
    for args in (["metrics", "show", "--json", "--redis", redis_url], ["metrics", "--redis", redis_url, "show", "--json"]):
        out = subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["collector"] is None and data["scale_sets"][0]["source"] == "worker heartbeats"
