"""The Grafana dashboard and the alert rules in docs/ against the exporter and a real Prometheus.

* every expression names metrics the exporter really exports (read from a scrape of a live
  exporter over a real Redis with sessions and workers), and only labels those metrics have;
* promtool accepts the rule file, and every dashboard expression as a rule;
* a real Prometheus scraping the exporter evaluates every dashboard expression without error,
  and fires each alert in the situation it describes, and not outside it.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from symphony.console.exporter import CATALOGUE, Exporter
from symphony.engine import EmbeddedRedis, Engine, JobSet, Observation, load_session, resolve_redis
from symphony.engine.embedded import free_port
from symphony.engine.initialize import initialize_session
from tests.helpers import ROOT, Poll, WorkerRun, terminate, wait_until, write_pipeline, write_session
from tests.scrape import fetch, parse

ALERTS = ROOT / "docs" / "alerts.yml"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$session": ".*"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "inf", "nan"}
GROUPING = r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
STRING = r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\''
OUTPUT = "{root}/{session}/{stage}/{item}.json"


# --- reading the expressions ---------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _targets(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for panel in panels:
        for target in panel.get("targets", ()):
            yield panel["title"], target["expr"]
        yield from _targets(panel.get("panels", ()))


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, expression) of every panel's query, Grafana's variables filled in."""
    data = json.loads(DASHBOARD.read_text())
    out = []
    for title, expr in _targets(data["panels"]):
        for variable, text in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, text)
        out.append((f"panel {title!r}", expr))
    return out


def dashboard_variables() -> list[tuple[str, str]]:
    """(metric, label) of every ``label_values(metric, label)`` variable."""
    data = json.loads(DASHBOARD.read_text())
    found = []
    for variable in data["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
        if text:
            assert match, f"variable {variable['name']}: unexpected query {text!r}"
            found.append((match.group(1), match.group(2)))
    return found


def every_expression() -> list[tuple[str, str]]:
    return [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()] + dashboard_expressions()


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and ranges left out)."""
    text = re.sub(STRING, '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(GROUPING, " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue  # a function or an aggregation
        names.add(match.group())
    return names


def label_names(expr: str) -> set[str]:
    text = re.sub(STRING, '""', expr)
    labels = set()
    for block in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", block))
    for _, inside in re.findall(GROUPING, text):
        labels.update(name.strip() for name in inside.split(",") if name.strip())
    return labels


def test_the_expression_reader_finds_metrics_and_labels():
    expr = ('histogram_quantile(0.95, sum by (stage, le) (rate(symphony_task_duration_seconds_bucket'
            '{session=~"a|b", pool!="x"}[5m]))) > 2 unless on (stage) up == 1e3')
    assert metric_names(expr) == {"symphony_task_duration_seconds_bucket", "up"}
    assert label_names(expr) == {"stage", "le", "session", "pool"}


# --- a live exporter over real data ------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """An exporter over a Redis with two sessions: 'quiet' (work queued, no worker for its stage)
    and 'flaky' (a stage whose tasks partly fail), and a worker that served 'flaky'."""
    tmp = tmp_path_factory.mktemp("live")
    server = EmbeddedRedis(directory=str(tmp / "redis"), appendonly=True)
    (tmp / "redis").mkdir()
    server.start()
    engine = Engine(resolve_redis(server.url), socket_timeout=3.0)
    write_pipeline(tmp / "quiet-pipe.yaml", [{"name": "q", "pool": "pq", "handler": "tests.handlers:hang",
                                              "output": OUTPUT, "params": {"hang": 600}}], name="quietpipe")
    write_pipeline(tmp / "flaky-pipe.yaml", [{"name": "a", "pool": "pa", "handler": "tests.handlers:fail_some",
                                              "output": OUTPUT, "max_attempts": 1,
                                              "params": {"bad": ["i1", "i2"]}}], name="flakypipe")
    for name, items in (("quiet", ["i0", "i1", "i2"]), ("flaky", [f"i{n}" for n in range(6)])):
        initialize_session(engine, load_session(write_session(tmp / f"{name}.yaml", name, f"{name}-pipe.yaml",
                                                              items, root=str(tmp / "data"))))
    # SLURM jobs as a tracker records them: one finished, one running
    engine.slurm.record("gpu", [("1001", {"array": "1001_0"}), ("1002", {"array": "1001_1"})], pool="pq",
                        cluster="test")
    engine.slurm.move("gpu", [Observation("1001", JobSet.COMPLETED, state="COMPLETED")], pending=0, running=1)
    exporter = Exporter(engine, port=0, cache_s=0.5).start()
    yield {"server": server, "engine": engine, "exporter": exporter, "tmp": tmp}
    exporter.stop()
    engine.close()
    server.close()


def run_flaky_worker(live) -> None:
    worker = WorkerRun(live["server"].url, "--pool", "pa", "--burst", "--processes", "1", log_dir=live["tmp"])
    assert worker.wait(90) == 0, worker.output()
    worker.stop()


def busy_worker(live) -> WorkerRun:
    """A worker of the quiet stage, busy with (and hanging on) one of its tasks."""
    worker = WorkerRun(live["server"].url, "--pool", "pq", "--processes", "1", "--drain-timeout", "1",
                       log_dir=live["tmp"])
    wait_until(lambda: [w for w in live["engine"].snapshot().workers
                        if w.state == "busy" and w.current_age_s is not None], timeout=60,
               message="the quiet stage's worker to be busy")
    return worker


def exported(live) -> tuple[dict, dict[str, str]]:
    return parse(fetch(live["exporter"].url + "/metrics"))


def sample_names(types: dict[str, str]) -> set[str]:
    """The sample names a scrape's families stand for (whether or not they had samples)."""
    out = set()
    for name, kind in types.items():
        out |= {"counter": {f"{name}_total"}, "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"}}.get(
            kind, {name})
    return out


@pytest.mark.slow
def test_every_expression_names_metrics_the_exporter_exports(live):
    run_flaky_worker(live)
    samples, types = exported(live)
    names = sample_names(types)
    declared = {m.name: m for m in CATALOGUE}
    labels_of = {s: set(m.labels) | ({"le"} if s.endswith("_bucket") else set())
                 for m in CATALOGUE for s in m.samples}
    expressions = every_expression()
    assert len(expressions) >= 20
    for where, expr in expressions:
        used = metric_names(expr)
        assert used, f"{where}: names no metric: {expr}"
        missing = used - names
        assert not missing, f"{where} names {sorted(missing)}, which the exporter does not export"
        known = set().union(*(labels_of.get(n, set()) for n in used))
        assert label_names(expr) <= known, f"{where}: labels {sorted(label_names(expr) - known)} not on {used}"
    for metric, label in dashboard_variables():
        assert metric in names and label in labels_of[metric]
    # the catalogue (where the labels above come from) is what the scrape really has
    for (name, labels), _ in samples.items():
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        if base in declared:
            expect = set(declared[base].labels) | ({"le"} if name.endswith("_bucket") else set())
            assert {k for k, _ in labels} == expect, (name, labels)
    families = {m.name for m in CATALOGUE}
    assert families <= set(types), f"declared but not exported: {families - set(types)}"


# --- promtool and a real Prometheus ------------------------------------------------------------------
def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian's prometheus package has it; .ci/run installs it)")
    return path


def test_promtool_accepts_the_rules_and_every_dashboard_expression(tmp_path):
    promtool = need("promtool")
    out = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    as_rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expression_{n}", "expr": expr} for n, (_, expr) in enumerate(dashboard_expressions())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(as_rules))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


class Prometheus:
    """A real Prometheus server scraping the exporter every second, with the alert rules loaded."""

    def __init__(self, binary: str, directory: Path, target: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(ALERTS)],
                  "scrape_configs": [{"job_name": "symphony", "static_configs": [{"targets": [target]}]}]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(directory / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **query: str) -> Any:
        body = json.loads(fetch(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(query)}"))
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> set[tuple[str, tuple]]:
        """(alert, its labels but severity and the scrape's own) of every pending or firing alert."""
        return {(a["labels"]["alertname"], tuple(sorted((k, v) for k, v in a["labels"].items()
                                                        if k not in ("alertname", "severity", "instance", "job"))))
                for a in self.api("alerts")["alerts"]}

    def wait_for(self, expected: set, timeout: float = 60.0) -> None:
        """Wait until exactly ``expected`` alerts are pending or firing."""
        seen: list = [None]

        def now() -> bool:
            seen[0] = self.alerts()
            return seen[0] == expected

        poll = Poll(now, timeout, f"the alerts {sorted(expected)}", detail=lambda: f"; last seen {sorted(seen[0] or ())}")
        while not poll.ready():
            time.sleep(0.5)

    def stop(self) -> None:
        terminate(self.process)
        self.log.close()


@pytest.fixture
def prometheus(live, tmp_path):
    binary = need("prometheus")
    exporter = live["exporter"]
    server = Prometheus(binary, tmp_path, f"127.0.0.1:{exporter.port}")
    try:
        wait_until(lambda: any(t["health"] == "up" for t in server.api("targets")["activeTargets"]), timeout=60,
                   interval=0.2, message="Prometheus to scrape the exporter")
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_prometheus_evaluates_the_dashboard_and_fires_each_alert_when_it_should(live, prometheus):
    live["engine"].retry("flaky")  # its failed items run (and fail) again while Prometheus watches
    run_flaky_worker(live)  # 'flaky' has no work left after
    no_worker = ("SymphonyQueuedWorkNoWorker", (("pool", "pq"), ("stage", "q")))
    stalled = ("SymphonySessionStalled", (("session", "quiet"),))
    failing = ("SymphonyFailuresRising", (("session", "flaky"), ("stage", "a")))
    expected = {no_worker, stalled, failing}
    prometheus.wait_for(expected)
    # a worker that serves the quiet stage (and hangs on its tasks): nobody is missing any more,
    # but the session stays stalled
    worker = busy_worker(live)
    try:
        prometheus.wait_for({stalled, failing})
        # Redis near its maxmemory, under a policy that may delete Symphony's keys with a TTL
        client = live["server"].client()
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "volatile-ttl")
        client.config_set("maxmemory", int(used / 0.92))
        try:
            prometheus.wait_for({stalled, failing, ("SymphonyRedisMemoryNearLimit", ()),
                                 ("SymphonyRedisCanEvict", ())})
            for where, expr in dashboard_expressions():  # an error fails the API call; every panel has data
                wait_until(lambda: prometheus.api("query", query=expr)["result"], timeout=30, interval=0.5,
                           message=f"data for {where}: {expr}")
        finally:
            client.config_set("maxmemory", 0)
            client.config_set("maxmemory-policy", "noeviction")
            client.close()
    finally:
        worker.stop()
    live["server"].kill()  # the exporter cannot read Redis
    try:
        wait_until(lambda: ("SymphonyExporterCannotReadRedis", ()) in prometheus.alerts(), timeout=60, interval=0.5,
                   message="the exporter alert")
    finally:
        live["server"].start()


def test_docs_list_every_metric():
    text = (ROOT / "docs" / "metrics.md").read_text()
    missing = [s for m in CATALOGUE for s in ([m.name] if m.kind == "histogram" else m.samples)
               if f"`{s}`" not in text]
    assert missing == []
