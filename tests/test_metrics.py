"""Machine metrics in Redis (symphony/engine/metrics.py): host samples deduplicated per host and bucket,
trimmed by age; Azure windows replaced in place; the console's reader contract."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import dataclasses

from symphony.engine import ScaleSetCpu
from symphony.engine.metrics import (AzureSample, HostMetricsWriter, azure_member, parse_azure_member, record_host_sample,
                            store_azure, write_collector_status)

SERIES = K.metric_series("hosts", "windows")
SEEN = K.metric_hosts_seen("windows")
INDEX = K.metric_index


def server_ms(r) -> int:
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def sample(cpu: float, mem: float = 40.0, cpus: int = 4) -> dict:
    return {"host_cpu": cpu, "host_mem": mem, "cpus": cpus, "cpu": 1.0}


def test_one_sample_per_host_per_bucket_whoever_offers_it(engine, r):
    bucket = (server_ms(r) // 30_000) * 30_000
    # four processes of vm1 and one of vm2 offer the same bucket: two samples, the first of each host wins
    assert record_host_sample(r, engine.keys, "windows", "vm1", bucket, sample(50)) is True
    for cpu in (60, 70, 80):
        assert record_host_sample(r, engine.keys, "windows", "vm1", bucket, sample(cpu)) is False
    assert record_host_sample(r, engine.keys, "windows", "vm2", bucket, sample(10)) is True
    members = r.zrange(SERIES, 0, -1)
    assert sorted(members) == [f"{bucket}|vm1|50|40|4", f"{bucket}|vm2|10|40|4"]
    assert r.hget(SEEN, "vm1") == str(bucket)
    assert r.zscore(INDEX, "hosts|windows") == bucket
    # every key it writes is bounded in time
    assert 0 < r.pttl(SERIES) <= 3 * 3600 * 1000 and 0 < r.pttl(SEEN) <= 3 * 3600 * 1000


def test_samples_are_trimmed_by_age_and_departed_hosts_forgotten(engine, r):
    now = (server_ms(r) // 30_000) * 30_000
    hour = 3600_000
    record_host_sample(r, engine.keys, "windows", "old-vm", now - 3 * hour, sample(99), retention_s=7200)
    record_host_sample(r, engine.keys, "windows", "vm1", now - hour, sample(20), retention_s=7200)
    assert r.zcard(SERIES) == 2
    record_host_sample(r, engine.keys, "windows", "vm1", now, sample(30), retention_s=7200)
    # the 3-hour-old sample fell out of the 2-hour retention, and its host out of the dedup hash
    assert [m.split("|")[1] for m in r.zrange(SERIES, 0, -1)] == ["vm1", "vm1"]
    assert r.hget(SEEN, "old-vm") is None and r.hget(SEEN, "vm1") == str(now)


def test_writer_calls_redis_at_most_once_per_bucket(engine, r):
    writer = HostMetricsWriter(r, engine.keys, "windows", "vm1", interval_s=30)
    base = (server_ms(r) // 30_000) * 30_000
    calls = [writer.offer(base + offset, sample(10 + offset / 1000)) for offset in range(0, 30_000, 5_000)]
    assert calls == [True, None, None, None, None, None]  # six heartbeats in one bucket: one call
    assert writer.offer(base + 30_000, sample(42)) is True
    other = HostMetricsWriter(r, engine.keys, "windows", "vm1", interval_s=30)  # another process, same host
    assert other.offer(base + 31_000, sample(77)) is False
    assert r.zcard(SERIES) == 2
    assert HostMetricsWriter(r, engine.keys, "windows", "vm1", interval_s=0).offer(base, sample(1)) is None
    assert writer.offer(base + 60_000, {"cpu": 3.0}) is None  # no host figures (psutil failed): nothing sent


def test_workers_without_a_pool_go_to_the_default_scope(engine, r):
    bucket = (server_ms(r) // 30_000) * 30_000
    record_host_sample(r, engine.keys, None, "vm|odd name", bucket, sample(5))
    assert r.zrange(K.metric_series("hosts", "default"), 0, -1) == [f"{bucket}|vm_odd_name|5|40|4"]


def test_scale_set_cpu_from_heartbeats_groups_by_pool(engine, r):
    now = server_ms(r)
    b0 = (now // 30_000) * 30_000
    for i, (b, vm1, vm2) in enumerate([(b0 - 60_000, 10, 30), (b0 - 30_000, 20, 40), (b0, 50, None)]):
        record_host_sample(r, engine.keys, "windows", "vm1", b, sample(vm1))
        if vm2 is not None:
            record_host_sample(r, engine.keys, "windows", "vm2", b, sample(vm2))
    record_host_sample(r, engine.keys, "linux", "gpu1", b0, sample(90))
    result = engine.scale_set_cpu()
    assert [type(x) for x in result] == [ScaleSetCpu, ScaleSetCpu]
    assert dataclasses.is_dataclass(result[0]) and result[0].__dataclass_params__.frozen
    linux, windows = result
    assert (linux.name, linux.source, linux.current, linux.instances) == ("linux", "worker heartbeats", 90.0, 1)
    assert windows.source == "worker heartbeats"
    assert windows.points == ((b0 / 1000 - 60, 20.0), (b0 / 1000 - 30, 30.0), (b0 / 1000, 50.0))
    # the newest bucket is still filling: vm2's latest sample (previous bucket) still counts
    assert windows.instances == 2 and windows.current == 45.0
    hosts = engine.host_cpu(pool="windows")
    assert [(h.host, h.current, h.cpus) for h in hosts] == [("vm1", 50.0, 4), ("vm2", 40.0, 4)]
    assert hosts[0].points[-1] == (b0 / 1000, 50.0)


def test_a_pool_that_stopped_writing_has_history_but_no_current_value(engine, r):
    b = (server_ms(r) // 30_000) * 30_000 - 20 * 60_000
    record_host_sample(r, engine.keys, "windows", "vm1", b - 30_000, sample(10))
    record_host_sample(r, engine.keys, "windows", "vm1", b, sample(20))
    (windows,) = engine.scale_set_cpu()
    assert windows.current is None and windows.instances == 0 and len(windows.points) == 2
    assert engine.scale_set_cpu(window_s=600) == ()


def azure(ts: float, cpu: float | None, *, instance: str = "", n: int | None = None) -> AzureSample:
    return AzureSample(time=ts, scale_set="vmss-win", instance=instance, cpu=cpu, disk_read=1024.0,
                       disk_write=2048.5, net_in=10.0, net_out=None, instances=n)


def test_azure_member_round_trip():
    s = azure(1_795_000_020.0, 41.25, n=3)
    assert azure_member(s) == "1795000020000|41.25|1024|2048.5|10||3"
    assert parse_azure_member(azure_member(s), "vmss-win", instance=False) == s
    v = azure(1_795_000_020.0, 7.5, instance="vmss-win_2")
    assert parse_azure_member(azure_member(v), "vmss-win", instance=True) == v


def test_azure_window_is_replaced_not_duplicated_and_wins_over_heartbeats(engine, r):
    now = server_ms(r) / 1000
    minute = now - now % 60
    record_host_sample(r, engine.keys, "windows", "vm1", int(minute * 1000), sample(12))
    start = minute - 600
    first = [azure(start + 60 * i, 10.0 + i, n=2) for i in range(9)] + [azure(minute - 60, None)]
    vms = [azure(start + 60 * i, 5.0, instance=f"vmss-win_{k}") for i in range(9) for k in range(2)]
    assert store_azure(r, engine.keys, "vmss-win", (start, minute), first, vms, now=now) == 28
    # the next poll re-reads an overlapping window: Azure revised a minute and filled the last one
    again = [azure(start + 60 * i, 10.0 + i, n=2) for i in range(1, 9)] + [azure(minute - 60, 55.0, n=3)]
    store_azure(r, engine.keys, "vmss-win", (start + 60, minute), again, None, now=now)
    key = K.metric_series("azure", "vmss-win")
    assert r.zcard(key) == 10 and r.zcard(key + ":vm") == 18
    (vmss,) = engine.scale_set_cpu()
    assert (vmss.name, vmss.source, vmss.current, vmss.instances) == ("vmss-win", "azure monitor", 55.0, 3)
    assert vmss.points[0] == (start, 10.0) and len(vmss.points) == 10
    assert 0 < r.pttl(key) <= 6 * 3600 * 1000


def test_stale_azure_data_falls_back_to_heartbeats(engine, r):
    now = server_ms(r) / 1000
    minute = now - now % 60
    record_host_sample(r, engine.keys, "windows", "vm1", int(minute * 1000), sample(12))
    old = now - 3600
    store_azure(r, engine.keys, "vmss-win", (old - 600, old), [azure(old - 120, 80.0, n=2)], [], now=old)
    (only,) = engine.scale_set_cpu()
    assert (only.name, only.source, only.current) == ("windows", "worker heartbeats", 12.0)
    # a collector polling every 30 minutes (from cron) keeps its data fresh for 3 intervals
    write_collector_status(r, engine.keys, "ok", "collecting 1 scale set(s)", interval_s=1800, scale_sets=["vmss-win"])
    (only,) = engine.scale_set_cpu(window_s=7200)
    assert only.source == "azure monitor" and only.points == ((round(old - 120, 3), 80.0),)
    status = engine.metrics_status()
    assert status.state == "ok" and status.interval_s == 1800 and status.scale_sets == ("vmss-win",)
    assert 0 < r.pttl(K.metric_collector) <= 3 * 1800 * 1000


def test_reader_costs_two_round_trips_however_many_series(engine, r):
    now = server_ms(r)
    for pool in ("a", "b", "c", "d"):
        record_host_sample(r, engine.keys, pool, "vm", (now // 30_000) * 30_000, sample(1))
    calls = []
    original = engine.client.pipeline

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    engine.client.pipeline = counting
    try:
        assert len(engine.scale_set_cpu()) == 4
    finally:
        engine.client.pipeline = original
    assert len(calls) == 2


def test_no_metrics_at_all_is_an_empty_answer(engine):
    assert engine.scale_set_cpu() == () and engine.host_cpu() == () and engine.metrics_status() is None
