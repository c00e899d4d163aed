"""The benchmark harness runs, end to end, at tiny sizes (``python -m bench --smoke``).

This is not a timed test: it only checks that every case runs and reports sane figures, so the
harness cannot rot. Targets are judged by full runs (docs/benchmarks.md), never here.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, worker_env


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_smoke_runs_every_case_and_writes_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    env = worker_env("redis://127.0.0.1:1/0")
    env.pop("REDIS_URL", None)  # the harness starts its own Redis; it must not need one
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    data = json.loads(out.read_text())
    assert data["machine"]["nproc"] >= 1 and data["machine"]["redis_server"]
    for key in ("1_stage", "4_stages"):
        summary = data["throughput"][key]["summary"]
        assert summary["symphony"]["rate"] > 0 and summary["minimal"]["rate"] > 0, summary
        assert summary["minimal"]["symphony_ratio"] > 0
        assert summary["minimal32"]["rate"] > 0 and summary["symphony"]["vs_minimal32"] > 0
        assert summary["symphony-p1"]["vs_minimal"] > 0
    fleet = data["fleet"]["rows"][0]
    assert fleet["workers"] == 200 and fleet["heartbeats"]["commands_per_s"] > 0
    assert fleet["snapshot"]["paged"]["rows"] > 0 and fleet["snapshot"]["full"]["rows"] == 200
    assert fleet["console"]["console_cpu_pct"] >= 0
    lat = data["latency"]["summary"]
    assert lat["symphony"]["samples"] == 5 and 0 < lat["symphony"]["p50_ms"] <= lat["symphony"]["p99_ms"]
    assert lat["minimal"]["p50_ms"] > 0
    assert data["command"]["summary"]["ratio"] > 0 and data["command"]["summary"]["bare_rate"] > 0
    up = data["startup"]["summary"]
    assert up["symphony"]["rate"] > 0 and up["minimal"]["symphony_ratio"] > 0
    assert up["ready_to_claim_s"] > 0 and up["single_enqueue_ms"] > 0 and up["lpush_ms"] > 0
    assert data["enqueue"]["summary"]["rate"] > 0
    assert data["inline"]["summary"]["2000"]["rate"] > 0 and data["inline"]["summary"]["2000"]["peak_rss_mb"] > 0
    assert data["memory"]["symphony"]["queued_bytes_per_task"] > 0
    assert data["memory"]["symphony"]["live_entries_left"] == 0
    assert data["snapshot"]["target"]["symphony"]["round_trips"] == 2
    assert all(row["symphony"]["round_trips"] == 2 for row in data["snapshot"]["scaling"])
    assert data["repair"]["planning_s"] > 0 and data["repair"]["list_s"] > 0
    assert {run["mode"] for run in data["reclaim"]["runs"]} == {"host", "process"}
    assert all(run["elsewhere"] for run in data["reclaim"]["runs"])
    assert data["exporter"]["scrape"]["ten_scrapers"]["redis_reads"] == 1
    assert data["exporter"]["scrape"]["series"] > 0 and data["exporter"]["scrape"]["round_trips"] >= 3
    assert [f["per_call"] for f in data["exporter"]["finish"]] == [1, 32]
    assert all(f["usec_per_task"] > 0 and f["tasks"] == 500 for f in data["exporter"]["finish"])
    fleet = data["fleet_workers"]
    assert fleet["registry_change"]["redis_cpu_ms_per_change"] > 0 and fleet["registry_change"]["workers"] == 20
    assert fleet["connections"]["per_worker_process_max"] == 1 and fleet["connections"]["worker_processes_seen"] == 2
    assert fleet["host_sampling"]["sample_us"] > 0
    assert data["targets"] and all(t["met"] is None for t in data["targets"])
    assert "throughput, 1 stage" in proc.stdout
