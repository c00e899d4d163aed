"""Outputs in Azure Blob Storage, against a real Azurite (tests/azurite.py): the store interface,
the sample pipeline drained by real workers, atomic uploads under SIGKILL, repair by listing,
encryption at rest, and the errors of a bad configuration at initialize."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from symphony.engine import LocalStore, Sealer, forget_stores, load_session, open_store, output_aad
from symphony.engine.crypto import VERSION
from tests.helpers import WorkerRun, sample_tasks, wait_until, worker_env, write_pipeline, write_session



def fresh_container(azurite) -> str:
    name = f"c{uuid.uuid4().hex[:12]}"
    azurite.container(name)
    return name


def symphony(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def storage_env(redis_url: str, azurite, **extra: str) -> dict:
    return worker_env(redis_url, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string, **extra)


def blobs(azurite, container: str, prefix: str = "", uncommitted: bool = False) -> dict[str, int]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    include = ["uncommittedblobs"] if uncommitted else None
    return {b.name: b.size for b in service.get_container_client(container).list_blobs(name_starts_with=prefix,
                                                                                        include=include)}


def read_blob(azurite, container: str, name: str) -> bytes:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.get_blob_client(container, name).download_blob().readall()


def blob_session(tmp_path: Path, container: str, **extra) -> tuple[Path, Path]:
    """The sample tasks/ (handlers without delay), its block7 session rooted at az://CONTAINER/data."""
    tasks = sample_tasks(tmp_path, seconds=0.0)
    (tasks / "block9.yaml").unlink()
    path = tasks / "block7.yaml"
    data = yaml.safe_load(path.read_text())
    data["root"] = f"az://{container}/data"
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return tasks, path


# --- the interface ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["local", "az", "fsspec"])
def test_every_store_answers_the_same_five_questions(kind, azurite, tmp_path):
    forget_stores()
    if kind == "local":
        root, store = str(tmp_path / "root"), LocalStore()
    elif kind == "az":
        root = f"az://{fresh_container(azurite)}/p"
        store = open_store(root)
    else:
        from symphony.storage.fsspec_store import FsspecStore

        root = f"abfs://{fresh_container(azurite)}/p"
        store = FsspecStore(root)
    assert store.check_writable(root) is None
    assert store.list_prefix(root + "/stage") == []
    source = tmp_path / "out.json"
    source.write_text('{"ok": true}')
    for name in ("a.json", "b.json"):
        store.put_atomic(str(source), f"{root}/stage/{name}")
    store.put_atomic(str(source), f"{root}/stage/deeper/c.json")  # not directly under stage/
    assert sorted(store.list_prefix(root + "/stage")) == (["a.json", "b.json", "deeper"] if kind == "local"
                                                          else ["a.json", "b.json"])
    assert store.exists(f"{root}/stage/a.json") and not store.exists(f"{root}/stage/zz.json")
    store.get(f"{root}/stage/a.json", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == '{"ok": true}'
    with pytest.raises(FileNotFoundError):
        store.get(f"{root}/stage/zz.json", str(tmp_path / "none"))
    store.delete(f"{root}/stage/a.json")
    store.delete(f"{root}/stage/a.json")  # deleting what is gone is fine
    assert not store.exists(f"{root}/stage/a.json")


# --- the sample pipeline on Blob Storage --------------------------------------------------------------
@pytest.mark.slow
def test_sample_session_on_blob_storage_is_drained_by_workers(azurite, redis_url, r, tmp_path):
    container = fresh_container(azurite)
    tasks, session = blob_session(tmp_path, container)
    env = storage_env(redis_url, azurite)
    out = symphony(env, "initialize", str(session), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "24 item(s) enqueued for rvm" in out.stdout
    scratch = tmp_path / "scratch"
    worker = WorkerRun(redis_url, "--burst", "--processes", "2", "--scratch-dir", str(scratch), log_dir=tmp_path,
                       cwd=tmp_path, env=env)
    assert worker.wait(180) == 0, worker.output()
    assert "MB stored through the scratch folder" in worker.output()
    spec = load_session(session)
    expected = {f"data/{spec.name}/{stage}/{item.id}.json" for stage in spec.pipeline.stage_names
                for item in spec.items}
    found = blobs(azurite, container, uncommitted=True)
    assert set(found) == expected, f"missing {expected - set(found)}, unexpected {set(found) - expected}"
    final = json.loads(read_blob(azurite, container, f"data/{spec.name}/process/row-001.json"))
    assert final["row"] == "row-001" and final["clusters"] > 0
    counts = {k: int(v) for k, v in r.hgetall(K.stats(spec.name)).items()}
    assert all(counts[f"{s}|completed"] == 24 for s in spec.pipeline.stage_names), counts
    assert not list(scratch.rglob("*")) or all(p.is_dir() for p in scratch.rglob("*")), "scratch files left behind"
    assert not (tmp_path / "data").exists() and not (tmp_path / ".symphony-data").exists()


@pytest.mark.slow
def test_a_worker_killed_mid_upload_leaves_no_partial_blob_and_the_task_completes_elsewhere(azurite, redis_url, r,
                                                                                          tmp_path):
    container = fresh_container(azurite)
    size = 8 << 20
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "big", "pool": "p", "handler": "tests.handlers:big_output",
                                             "output": "{root}/{session}/{stage}/{item}.bin", "params": {"size": size},
                                             "max_attempts": 5, "retry_backoff": 0.05}])
    session = write_session(tmp_path / "s.yaml", "up1", "pipe.yaml", ["x1"], root=f"az://{container}/data")
    # tiny blocks: the upload is hundreds of Put Block requests, so the kill lands in the middle of it
    env = storage_env(redis_url, azurite, SYMPHONY_STORAGE_BLOCK_BYTES="16384")
    out = symphony(env, "initialize", str(session), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doomed = WorkerRun(redis_url, "--processes", "1", "--name", "doomed", log_dir=tmp_path, env=env, heartbeat=0.5)
    name = "data/up1/big/x1.bin"
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(container, name)

    def uploading() -> bool:
        try:
            return bool(blob.get_block_list("uncommitted")[1])
        except Exception:  # noqa: BLE001 - no blocks staged yet
            return False

    wait_until(uploading, timeout=60, interval=0.005, message="the upload to be under way")
    doomed.kill_group()
    assert name not in blobs(azurite, container), "a partial blob is visible"
    assert not blob.exists()
    rescuer = WorkerRun(redis_url, "--processes", "1", "--name", "rescuer", log_dir=tmp_path, env=env, heartbeat=0.5)
    try:
        wait_until(lambda: blobs(azurite, container).get(name) == size, timeout=90,
                   message="the reclaimed task to upload the whole output")
        wait_until(lambda: r.hget(K.stats("up1"), "big|completed") == "1", message="completion accounting")
        assert blobs(azurite, container, uncommitted=True) == {name: size}
        assert read_blob(azurite, container, name)[:4] == b"x1:2"  # the second attempt's output
    finally:
        rescuer.stop()


# --- repair -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_repair_on_blob_storage_restores_exactly_the_furthest_output_rule(azurite, redis_url, r, tmp_path):
    container = fresh_container(azurite)
    stages = ["a", "b", "c", "d"]
    write_pipeline(tmp_path / "pipe.yaml", [{"name": s, "pool": "p", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json"} for s in stages])
    items = [f"i{n:03d}" for n in range(120)]
    session = write_session(tmp_path / "s.yaml", "rep1", "pipe.yaml", items, root=f"az://{container}/data")
    forget_stores()
    store = open_store(f"az://{container}/data")
    source = tmp_path / "o.json"
    source.write_text("{}")
    rng = random.Random(16)
    for item in items:  # every output there, then a random set deleted
        for stage in stages:
            store.put_atomic(str(source), f"az://{container}/data/rep1/{stage}/{item}.json")
    present = {(s, i) for s in stages for i in items}
    for gone in rng.sample(sorted(present), 220):
        store.delete(f"az://{container}/data/rep1/{gone[0]}/{gone[1]}.json")
        present.discard(gone)
    expected: dict[str, set[str]] = {s: set() for s in stages}
    for item in items:
        furthest = max((k + 1 for k, s in enumerate(stages) if (s, item) in present), default=0)
        if furthest < len(stages):
            expected[stages[furthest]].add(item)
    env = storage_env(redis_url, azurite)
    out = symphony(env, "repair", "rep1", "--file", str(session), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    for stage in stages:
        assert {json.loads(m)["i"] for m in r.lrange(K.queue(stage, "rep1"), 0, -1)} == expected[stage], stage
    again = symphony(env, "repair", "rep1", "--file", str(session), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["to_enqueue"] == 0, again.stdout
    assert sum(r.llen(K.queue(s, "rep1")) for s in stages) == sum(len(v) for v in expected.values())


# --- encryption at rest --------------------------------------------------------------------------------
@pytest.mark.slow
def test_encrypted_outputs_are_unreadable_without_the_key_and_the_pipeline_completes(azurite, redis_url, r, tmp_path):
    container = fresh_container(azurite)
    key = os.urandom(32)
    tasks, session = blob_session(tmp_path, container, encrypt_outputs=True)
    env = storage_env(redis_url, azurite, SYMPHONY_KEY=key.hex())
    out = symphony(env, "initialize", str(session), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    worker = WorkerRun(redis_url, "--burst", "--processes", "2", log_dir=tmp_path, cwd=tmp_path, env=env)
    assert worker.wait(180) == 0, worker.output()
    spec = load_session(session)
    counts = {k: int(v) for k, v in r.hgetall(K.stats(spec.name)).items()}
    assert all(counts[f"{s}|completed"] == 24 for s in spec.pipeline.stage_names), counts
    sealer = Sealer(key)
    for stage in spec.pipeline.stage_names:
        raw = read_blob(azurite, container, f"data/{spec.name}/{stage}/row-007.json")
        assert b"row-007" not in raw and raw.startswith(VERSION.encode() + b".")
        with pytest.raises(ValueError):
            json.loads(raw)
        clear = json.loads(sealer.open(raw.decode(), output_aad(spec.name, stage, "row-007")))
        assert clear["row"] == "row-007"
    with pytest.raises(Exception):  # bound to its item: another item's name does not open it
        sealer.open(read_blob(azurite, container, f"data/{spec.name}/rvm/row-007.json").decode(),
                    output_aad(spec.name, "rvm", "row-008"))


@pytest.mark.slow
def test_a_tampered_sealed_output_fails_the_next_stage_with_the_reason(azurite, redis_url, r, tmp_path):
    container = fresh_container(azurite)
    key = os.urandom(32)
    write_pipeline(tmp_path / "pipe.yaml", [{"name": s, "pool": "p", "handler": "tests.handlers:where",
                                             "output": "{root}/{session}/{stage}/{item}.json", "max_attempts": 1}
                                            for s in ("a", "b")])
    session = write_session(tmp_path / "s.yaml", "tamper1", "pipe.yaml", ["x1"], root=f"az://{container}/data",
                            encrypt_outputs=True)
    env = storage_env(redis_url, azurite, SYMPHONY_KEY=key.hex())
    assert symphony(env, "initialize", str(session), cwd=tmp_path).returncode == 0
    worker = WorkerRun(redis_url, "--burst", "--roles", "a", "--processes", "1", log_dir=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        container, "data/tamper1/a/x1.json")
    token = blob.download_blob().readall()
    blob.upload_blob(token[:-6] + (b"AAAAAA" if not token.endswith(b"AAAAAA") else b"BBBBBB"), overwrite=True)
    worker = WorkerRun(redis_url, "--burst", "--roles", "b", "--processes", "1", log_dir=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    record = json.loads(r.hget(K.outcomes("tamper1"), "x1"))
    assert "cannot be opened" in json.dumps(record) and "failed authentication" in json.dumps(record), record


# --- a bad configuration ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing container", "wrong key", "no credentials"])
def test_a_bad_storage_configuration_is_one_clear_line_at_initialize_and_nothing_is_enqueued(case, azurite, redis_url,
                                                                                          r, tmp_path):
    container = fresh_container(azurite)
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "a", "pool": "p", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json"}])
    root = f"az://{container if case != 'missing container' else 'nosuchcontainer'}/data"
    session = write_session(tmp_path / "s.yaml", "bad1", "pipe.yaml", ["x1", "x2"], root=root)
    env = storage_env(redis_url, azurite)
    if case == "wrong key":
        from tests.azurite import KEY

        env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string.replace(KEY, "A" * 86 + "==")
    elif case == "no credentials":
        del env["AZURE_STORAGE_CONNECTION_STRING"]
    out = symphony(env, "initialize", str(session), cwd=tmp_path)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    lines = [line for line in text.splitlines() if "s.yaml" in line and "[root]" in line]
    assert len(lines) == 1, text
    expected = {"missing container": "'nosuchcontainer' of storage account 'devstoreaccount1' does not exist",
                "wrong key": "refused the credentials", "no credentials": "no Azure Storage credentials"}[case]
    assert expected in lines[0], text
    assert "Traceback" not in text
    from tests.azurite import KEY

    assert KEY not in text and "A" * 86 not in text
    assert r.llen(K.queue("a", "bad1")) == 0 and not r.exists(K.session("bad1"))


# --- per-pool roots: one share, mounted at different paths ------------------------------------------------
@pytest.mark.slow
def test_pools_that_mount_one_share_at_different_paths_agree_on_what_exists(redis_url, r, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (tmp_path / "mnt-linux").symlink_to(share)  # the Linux VMs' mount point
    (tmp_path / "Z").symlink_to(share)  # the Windows VMs' (Z:\scans there)
    (tmp_path / "operator").symlink_to(share)  # where the operator's machine sees it
    write_pipeline(tmp_path / "pipe.yaml", [
        {"name": "a", "pool": "windows", "handler": "tests.handlers:where",
         "output": "{root}/{session}/{stage}/{item}.json"},
        {"name": "b", "pool": "linux", "handler": "tests.handlers:where",
         "output": "{root}/{session}/{stage}/{item}.json"}])
    session = write_session(tmp_path / "s.yaml", "pools1", "pipe.yaml", ["x1", "x2", "x3"],
                            root=str(tmp_path / "operator"),
                            pool_roots={"windows": str(tmp_path / "Z"), "linux": str(tmp_path / "mnt-linux")})
    env = worker_env(redis_url)
    assert symphony(env, "initialize", str(session), cwd=tmp_path).returncode == 0
    for pool in ("windows", "linux"):
        worker = WorkerRun(redis_url, "--burst", "--pool", pool, "--processes", "1", log_dir=tmp_path, env=env)
        assert worker.wait(120) == 0, worker.output()
    assert sorted(p.name for p in (share / "pools1" / "b").iterdir()) == ["x1.json", "x2.json", "x3.json"]
    seen = json.loads((share / "pools1" / "b" / "x1.json").read_text())
    linux = tmp_path / "mnt-linux"
    assert seen == {"root": str(linux), "input": str(linux / "pools1" / "a" / "x1.json"), "input_exists": True}
    assert json.loads((share / "pools1" / "a" / "x1.json").read_text())["root"] == str(tmp_path / "Z")
    (share / "pools1" / "b" / "x2.json").unlink()
    (share / "pools1" / "a" / "x3.json").unlink()
    out = symphony(env, "repair", "pools1", "--file", str(session), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {s["stage"]: s["count"] for s in json.loads(out.stdout)["stages"]} == {"a": 0, "b": 1}  # x3's b exists


def test_a_pool_root_must_be_absolute_on_its_machines(tmp_path):
    from symphony.engine import SpecError

    write_pipeline(tmp_path / "pipe.yaml", [{"name": "a", "pool": "windows", "handler": "tests.handlers:ok",
                                             "output": "{root}/{session}/{stage}/{item}.json"}])
    ok = write_session(tmp_path / "ok.yaml", "p1", "pipe.yaml", ["x"], pool_roots={"windows": "Z:\\scans",
                                                                                  "linux": "/mnt/scans"})
    spec = load_session(ok)
    assert spec.record().root_for("windows") == "Z:\\scans" and spec.record().root_for("other") == spec.root
    bad = write_session(tmp_path / "bad.yaml", "p2", "pipe.yaml", ["x"], pool_roots={"windows": "scans"})
    with pytest.raises(SpecError) as caught:
        load_session(bad)
    assert "the root of pool windows must be an absolute path on its machines" in str(caught.value)


# --- VM metrics for analysis, in append blobs -----------------------------------------------------------
def test_the_collectors_file_sinks_append_to_one_blob_per_day_without_duplicates(azurite, tmp_path):
    pytest.importorskip("azure.monitor.querymetrics")
    import csv
    import io

    from symphony.azure.monitor.sinks import FILE_FIELDS, FileSink
    from symphony.engine import AzureSample

    container = fresh_container(azurite)
    day1 = 1_796_083_200.0  # 2026-12-01T00:00:00Z
    samples = [AzureSample(time=day1 - 120 + 60 * n, scale_set=f"vmss-{k}", cpu=10.0 + n, instances=2)
               for n in range(5) for k in ("win", "linux")]
    url = f"az://{container}/vm-metrics"
    sink = FileSink(url, url, settle_s=0)
    assert sink.write(samples[:6], now=day1 + 3600) == 6
    assert FileSink(url, url, settle_s=0).write(samples, now=day1 + 3600) == 4  # after a restart: only the new ones
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)
    found = {b.name: b.blob_type for b in client.list_blobs()}
    assert set(found) == {f"vm-metrics/{d}.{ext}" for d in ("2026-11-30", "2026-12-01") for ext in ("jsonl", "csv")}
    assert {str(t).lower().split(".")[-1] for t in found.values()} == {"appendblob"}
    lines = [json.loads(line) for d in ("2026-11-30", "2026-12-01")
             for line in read_blob(azurite, container, f"vm-metrics/{d}.jsonl").decode().splitlines()]
    assert sorted((r["scale_set"], r["ts"]) for r in lines) == sorted((s.scale_set, int(s.time)) for s in samples)
    table = list(csv.DictReader(io.StringIO(read_blob(azurite, container, "vm-metrics/2026-12-01.csv").decode())))
    assert list(table[0]) == list(FILE_FIELDS) and len(table) == 6


def test_listing_takes_names_from_every_page_and_unescapes_them(azurite, tmp_path):
    forget_stores()
    container = fresh_container(azurite)
    store = open_store(f"az://{container}/p")
    source = tmp_path / "o"
    source.write_text("")
    odd = ["a&b.json", "c<d>.json", "é ü.json", "q'\"x.json"]
    for name in odd:
        store.put_atomic(str(source), f"az://{container}/p/s/{name}")
    from symphony.storage import azure_blob

    old = azure_blob.PAGE
    azure_blob.PAGE = 2  # three pages
    try:
        assert sorted(store.list_prefix(f"az://{container}/p/s")) == sorted(odd)
        assert sorted(store._list_sdk("p/s/")) == sorted(f"p/s/{n}" for n in odd)
    finally:
        azure_blob.PAGE = old
    from symphony.engine import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        open_store("az://nosuchcontainer/p").list_prefix("az://nosuchcontainer/p/s")


# --- credentials never reach a handler; the scratch limit ------------------------------------------------
@pytest.mark.slow
def test_no_handler_sees_the_storage_credentials_and_no_log_shows_them(azurite, redis_url, r, tmp_path):
    container = fresh_container(azurite)
    dump = "import os, json, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    write_pipeline(tmp_path / "pipe.yaml", [
        {"name": "py", "pool": "p", "handler": "tests.handlers:see_secrets",
         "output": f"az://{container}/{{session}}/{{stage}}/{{item}}.json"},  # a stage's own URL, a local root
        {"name": "cmd", "pool": "p", "command": ["{python}", "-c", dump, "{output}"],
         "output": f"az://{container}/{{session}}/{{stage}}/{{item}}.json"}])
    session = write_session(tmp_path / "s.yaml", "sec1", "pipe.yaml", ["x1"], root=str(tmp_path / "data"))
    from tests.azurite import KEY

    env = storage_env(redis_url, azurite, AZURE_STORAGE_KEY=KEY, AZURE_STORAGE_SAS_TOKEN="sv=2020&sig=secretsig123")
    assert symphony(env, "initialize", str(session), cwd=tmp_path).returncode == 0
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", "--log-level", "DEBUG", log_dir=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    assert r.hget(K.stats("sec1"), "cmd|completed") == "1", worker.output()
    seen_py = json.loads(read_blob(azurite, container, "sec1/py/x1.json"))
    seen_cmd = json.loads(read_blob(azurite, container, "sec1/cmd/x1.json"))
    for text in (json.dumps(seen_py), json.dumps(seen_cmd), worker.output()):
        assert KEY not in text and "secretsig123" not in text and "AZURE_STORAGE_CONNECTION_STRING" not in text


@pytest.mark.slow
def test_an_output_over_the_scratch_limit_fails_its_task_with_the_sizes(azurite, redis_url, r, tmp_path):
    container = fresh_container(azurite)
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "big", "pool": "p", "handler": "tests.handlers:big_output",
                                             "output": "{root}/{session}/{stage}/{item}.bin",
                                             "params": {"size": 2_000_000}, "max_attempts": 1}])
    session = write_session(tmp_path / "s.yaml", "lim1", "pipe.yaml", ["x1"], root=f"az://{container}/data")
    env = storage_env(redis_url, azurite)
    assert symphony(env, "initialize", str(session), cwd=tmp_path).returncode == 0
    scratch = tmp_path / "scratch"
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", "--scratch-limit", "1", "--scratch-dir", str(scratch),
                       log_dir=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    record = json.dumps(json.loads(r.hget(K.outcomes("lim1"), "x1")))
    assert "2,000,000 bytes, over this worker's scratch limit of 1,000,000 bytes" in record, record
    assert blobs(azurite, container) == {} and not [p for p in scratch.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_inputs_in_blob_storage_are_checked_at_initialize_and_fetched_for_the_first_stage(azurite, redis_url, r,
                                                                                         tmp_path):
    container = fresh_container(azurite)
    write_pipeline(tmp_path / "pipe.yaml", [{"name": "a", "pool": "p", "handler": "tests.handlers:where",
                                             "output": "{root}/{session}/{stage}/{item}.json"}])
    session = write_session(tmp_path / "s.yaml", "in1", "pipe.yaml", ["x1", "x2"], root=f"az://{container}/data",
                            input="{root}/raw/{item}.json")
    forget_stores()
    store = open_store(f"az://{container}/data")
    source = tmp_path / "raw.json"
    source.write_text('{"raw": true}')
    store.put_atomic(str(source), f"az://{container}/data/raw/x1.json")
    env = storage_env(redis_url, azurite)
    out = symphony(env, "initialize", str(session), cwd=tmp_path)
    assert out.returncode != 0
    assert f"[input] input not found: az://{container}/data/raw/x2.json" in out.stdout + out.stderr
    assert not r.exists(K.session("in1"))
    store.put_atomic(str(source), f"az://{container}/data/raw/x2.json")
    out = symphony(env, "initialize", str(session), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    seen = json.loads(read_blob(azurite, container, "data/in1/a/x2.json"))
    assert seen["input_exists"] and seen["input"].endswith("/in/x2.json") and not seen["input"].startswith("az://")


@pytest.mark.slow
def test_local_outputs_can_be_sealed_at_rest_too(redis_url, r, tmp_path):
    key = os.urandom(32)
    write_pipeline(tmp_path / "pipe.yaml", [{"name": s, "pool": "p", "handler": "tests.handlers:where",
                                             "output": "{root}/{session}/{stage}/{item}.json"} for s in ("a", "b")])
    session = write_session(tmp_path / "s.yaml", "loc1", "pipe.yaml", ["x1", "x2"], root=str(tmp_path / "data"),
                            encrypt_outputs=True)
    env = worker_env(redis_url, SYMPHONY_KEY=key.hex())
    assert symphony(env, "initialize", str(session), cwd=tmp_path).returncode == 0
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path, env=env)
    assert worker.wait(120) == 0, worker.output()
    assert r.hget(K.stats("loc1"), "b|completed") == "2", worker.output()
    sealer = Sealer(key)
    for stage in ("a", "b"):
        raw = (tmp_path / "data" / "loc1" / stage / "x1.json").read_text()
        assert raw.startswith(VERSION + ".") and "input" not in raw
        assert json.loads(sealer.open(raw, output_aad("loc1", stage, "x1")))["input_exists"] is (stage == "b")
    assert not list((tmp_path / "data").rglob("*.part-*"))
