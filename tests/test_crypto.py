"""Encrypted task data and job key/values (AES-GCM), unit and end to end."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import base64
import json
import subprocess
import sys
import pytest

from symphony.engine import ConfigError, CryptoError, Engine, Sealer, load_key, redact, resolve_redis
from symphony.engine.messages import decode_task
from symphony.engine.messages import encode_task
from tests.helpers import ROOT, WorkerRun, worker_env, write_pipeline, write_session

KEY = bytes(range(32))

OTHER = bytes(range(1, 33))


def test_seal_and_open_and_every_way_to_fail():
    sealer = Sealer(KEY)
    token = sealer.seal_json({"vines": 12}, "symphony-task|s|row-1")
    assert sealer.open_json(token, "symphony-task|s|row-1") == {"vines": 12}
    assert "vines" not in token  # (not "12": a random base64 token contains it now and then)
    with pytest.raises(CryptoError, match="another key"):
        Sealer(OTHER).open_json(token, "symphony-task|s|row-1")
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(CryptoError, match="failed authentication"):
        sealer.open_json(tampered, "symphony-task|s|row-1")
    with pytest.raises(CryptoError, match="belongs to another item"):
        sealer.open_json(token, "symphony-task|s|row-2")  # moved to another item
    with pytest.raises(CryptoError, match="not encrypted"):
        sealer.open_json('{"vines": 12}', "symphony-task|s|row-1")
    with pytest.raises(CryptoError, match="malformed|truncated"):
        sealer.open_json("v1.abcd.xyz", "a")


def test_the_key_id_in_a_token_is_authenticated():
    """Changing the key id (or the version) inside a token fails like any other changed byte."""
    sealer = Sealer(KEY)
    token = sealer.seal_json({"vines": 12}, "symphony-task|s|row-1")
    version, kid, body = token.split(".")
    assert version == "v2" and kid == sealer.key_id
    for changed in (f"{version}.{'0' * 8 if kid != '0' * 8 else '1' * 8}.{body}", f"v1.{kid}.{body}"):
        with pytest.raises(CryptoError):
            sealer.open_json(changed, "symphony-task|s|row-1")
    # a token made by an earlier version (key id not bound) still opens
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    legacy = "v1.%s.%s" % (sealer.key_id, base64.urlsafe_b64encode(
        nonce + AESGCM(KEY).encrypt(nonce, b'{"vines":3}', b"symphony-task|s|row-1")).decode().rstrip("="))
    assert sealer.open_json(legacy, "symphony-task|s|row-1") == {"vines": 3}


def test_keys_from_environment_or_file_and_bad_keys(tmp_path):
    b64 = base64.b64encode(KEY).decode()
    assert load_key(env={"SYMPHONY_KEY": b64}) == KEY
    assert load_key(env={"SYMPHONY_KEY": KEY.hex()}) == KEY
    path = tmp_path / "key"
    path.write_text(b64 + "\n")
    assert load_key(str(path), env={}) == KEY
    assert load_key(env={"SYMPHONY_KEY_FILE": str(path)}) == KEY
    assert load_key(env={}) is None
    assert b64 not in redact(f"key is {b64}")  # a key read is a secret from then on
    with pytest.raises(ConfigError, match="16, 24 or 32 bytes"):
        load_key(env={"SYMPHONY_KEY": "too-short"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_key(str(tmp_path / "missing"), env={})


def test_sealed_messages_carry_the_token_unchanged_through_stages_and_retries():
    sealer = Sealer(KEY)
    raw = encode_task("s", "a", "row-1", 0, {"vines": 12, "secret": "field data"}, sealer=sealer)
    data = json.loads(raw)
    assert set(data) == {"i", "s", "t", "a", "e"} and "field data" not in raw
    task = decode_task(raw)
    assert task.meta is None and task.sealed == data["e"]
    assert json.loads(task.next_attempt().encode())["e"] == data["e"]
    assert json.loads(task.at_stage("b").encode())["e"] == data["e"]
    with pytest.raises(Exception, match="'e'"):
        decode_task('{"i":"x","s":"s","t":"a","a":0,"m":{},"e":"v1.x.y"}')


def test_engine_refuses_task_data_it_cannot_trust(redis_url):
    sealed = decode_task(encode_task("s", "a", "row-1", 0, {"vines": 3}, sealer=Sealer(KEY)))
    clear = decode_task(encode_task("s", "a", "row-1", 0, {"vines": 3}))
    config = resolve_redis(redis_url)
    with Engine(config, sealer=Sealer(KEY)) as engine:
        assert engine.open_task(sealed) == {"vines": 3}
        with pytest.raises(CryptoError, match="not encrypted"):
            engine.open_task(clear)
    with Engine(config, sealer=Sealer(OTHER)) as engine, pytest.raises(CryptoError, match="another key"):
        engine.open_task(sealed)
    with Engine(config) as engine:
        assert engine.open_task(clear) == {"vines": 3}
        with pytest.raises(CryptoError, match="no key"):
            engine.open_task(sealed)


def test_job_values_are_stored_sealed(redis_url, r):
    with Engine(resolve_redis(redis_url), sealer=Sealer(KEY)) as engine:
        kv = engine.job_store("s", "a", "row-1")
        kv.set("status", "classified: 12 vines")
        kv.update({"score": 0.93})
        assert kv.incr("runs") == 1 and kv.incr("runs", 2) == 3
        assert kv.get("status") == "classified: 12 vines" and kv.all() == {
            "status": "classified: 12 vines", "score": "0.93", "runs": "3"}
        stored = r.hgetall(K.job("s", "a", "row-1"))
        assert all(v.startswith("v2.") for v in stored.values()) and "12 vines" not in json.dumps(stored)
        assert engine.last_job("s") == ("a:row-1", kv.all())
    with Engine(resolve_redis(redis_url), sealer=Sealer(OTHER)) as wrong, pytest.raises(CryptoError, match="status"):
        wrong.job_store("s", "a", "row-1").get("status")
    r.hset(K.job("s", "a", "row-1"), "runs", stored["score"])  # a value moved to another field
    with Engine(resolve_redis(redis_url), sealer=Sealer(KEY)) as engine, pytest.raises(CryptoError, match="runs"):
        engine.job_store("s", "a", "row-1").get("runs")


def symphony(url: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", *args], cwd=ROOT, env=env or worker_env(url),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def sealed_session(tmp_path, redis_url, r):
    """A 2-stage session initialized by the CLI with an encryption key file."""
    key_file = tmp_path / "symphony.key"
    key_file.write_text(base64.b64encode(KEY).decode())
    key_file.chmod(0o600)
    stages = [{"name": n, "pool": "p", "handler": "tests.handlers:meta_kv", "max_attempts": 1,
               "output": "{root}/{session}/{stage}/{item}.json"} for n in ("a", "b")]
    write_pipeline(tmp_path / "pipe.yaml", stages)
    items = [{"id": f"row-{n}", "vines": n, "owner": "confidential grower"} for n in range(1, 6)]
    session = write_session(tmp_path / "s.yaml", "sealed", "pipe.yaml", items, root=str(tmp_path / "data"))
    out = symphony(redis_url, "initialize", str(session), "--encryption-key-file", str(key_file))
    assert out.returncode == 0, out.stderr
    queued = r.lrange(K.queue("a", "sealed"), 0, -1)
    assert len(queued) == 5 and all('"e":"v2.' in m for m in queued)
    assert not any("confidential" in m or '"m"' in m for m in queued), "task data must not sit in Redis in clear"
    return tmp_path


def run_worker(redis_url, tmp_path, **env):
    worker = WorkerRun(redis_url, "--burst", "--processes", "1", log_dir=tmp_path, env=worker_env(redis_url, **env))
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    worker.stop()
    return log


def stats(r) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(K.stats("sealed")).items()}


@pytest.mark.slow
def test_a_worker_with_the_key_runs_sealed_tasks(sealed_session, redis_url, r):
    log = run_worker(redis_url, sealed_session, SYMPHONY_KEY=KEY.hex())
    assert stats(r)["b|completed"] == 5, log
    out = json.loads((sealed_session / "data" / "sealed" / "b" / "row-3.json").read_text())
    assert out["meta"] == {"vines": 3, "owner": "confidential grower"}  # the handler saw it decrypted
    assert out["kv"] == {"vines": "3", "runs": "1"}
    stored = r.hgetall(K.job("sealed", "b", "row-3"))
    assert stored and all(v.startswith("v2.") for v in stored.values())
    assert KEY.hex() not in log


@pytest.mark.parametrize("env, reason", [
    ({"SYMPHONY_KEY": OTHER.hex()}, "encrypted with another key"),
    ({}, "encrypted but this process has no key"),
])
@pytest.mark.slow
def test_a_wrong_or_missing_key_fails_every_task_with_the_reason_and_runs_nothing(sealed_session, redis_url, r, env,
                                                                                 reason):
    run_worker(redis_url, sealed_session, **env)
    assert stats(r)["a|failed"] == 5 and stats(r).get("a|completed", 0) == 0
    outcomes = {k: json.loads(v) for k, v in r.hgetall(K.outcomes("sealed")).items()}
    assert all(reason in o["error"] and o["state"] == "failed" for o in outcomes.values()), outcomes
    assert not (sealed_session / "data" / "markers").exists(), "a handler ran on data it could not trust"


@pytest.mark.slow
def test_tampered_or_clear_task_data_is_rejected_and_the_rest_flows(sealed_session, redis_url, r):
    first = json.loads(r.lindex(K.queue("a", "sealed"), 0))
    token = first["e"]
    first["e"] = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    r.lset(K.queue("a", "sealed"), 0, json.dumps(first, separators=(",", ":")))  # tampered with in the queue
    second = json.loads(r.lindex(K.queue("a", "sealed"), 1))
    second["e"] = json.loads(r.lindex(K.queue("a", "sealed"), 2))["e"]  # another item's sealed data
    r.lset(K.queue("a", "sealed"), 1, json.dumps(second, separators=(",", ":")))
    r.rpush(K.queue("a", "sealed"), '{"i":"row-9","s":"sealed","t":"a","a":0,"m":{"vines":99}}')  # planted in clear
    r.hset(K.live("sealed"), "row-9", "a")  # as if it were an item of the session (else the claim refuses it)
    run_worker(redis_url, sealed_session, SYMPHONY_KEY_FILE=str(sealed_session / "symphony.key"))
    outcomes = {k: json.loads(v)["error"] for k, v in r.hgetall(K.outcomes("sealed")).items()}
    assert set(outcomes) == {first["i"], second["i"], "row-9"}, outcomes
    assert "failed authentication" in outcomes[first["i"]] and "failed authentication" in outcomes[second["i"]]
    assert "not encrypted" in outcomes["row-9"]
    assert stats(r)["b|completed"] == 3
    ran = {p.name.split("-", 3)[2] + "-" + p.name.split("-")[3] for p in (sealed_session / "data" / "markers").iterdir()}
    assert not ran & {first["i"], second["i"], "row-9"}, "a handler ran on rejected data"


@pytest.mark.slow
def test_retry_carries_encrypted_task_data_over_unchanged(sealed_session, redis_url, r):
    """retry rebuilds a failed task from its recorded message; sealed data must come back as it
    was (not re-sealed empty, not needing the key)."""
    run_worker(redis_url, sealed_session)  # no key: every task fails, its sealed message recorded
    before = {json.loads(v)["task"] for v in r.hgetall(K.outcomes("sealed")).values()}
    tokens = {json.loads(t)["i"]: json.loads(t)["e"] for t in before}
    with Engine(resolve_redis(redis_url)) as keyless:  # the operator retries without the key
        assert keyless.retry("sealed").requeued == 5
    queued = {json.loads(m)["i"]: json.loads(m)["e"] for m in r.lrange(K.queue("a", "sealed"), 0, -1)}
    assert queued == tokens
    run_worker(redis_url, sealed_session, SYMPHONY_KEY=KEY.hex())
    out = json.loads((sealed_session / "data" / "sealed" / "b" / "row-2.json").read_text())
    assert out["meta"] == {"vines": 2, "owner": "confidential grower"}


@pytest.mark.slow
def test_the_console_takes_the_key_too(redis_url, tmp_path):
    """symphony-tui's initialize and repair must seal what they enqueue, as the CLI does: it reads
    the same key (here a malformed one is refused before anything starts)."""
    shot = tmp_path / "c.svg"
    out = subprocess.run([sys.executable, "-m", "symphony.console.tui_main", "--redis", redis_url, "--screenshot", str(shot),
                          "--screenshot-after", "1"], cwd=ROOT, env=worker_env(redis_url, SYMPHONY_KEY="not-a-key"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "16, 24 or 32 bytes" in out.stderr and not shot.exists()
    out = subprocess.run([sys.executable, "-m", "symphony.console.tui_main", "--redis", redis_url, "--screenshot", str(shot),
                          "--screenshot-after", "1"], cwd=ROOT, env=worker_env(redis_url, SYMPHONY_KEY=KEY.hex()),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr  # 1: nothing registered to draw yet, still no key error
    assert "bytes" not in out.stderr and KEY.hex() not in out.stderr


def test_a_refusal_says_whether_this_process_or_the_data_is_to_blame():
    """Another key, no key, or clear data on a process with a key: this process (its host fails
    over, the task is retried elsewhere); tampered data or another item's token: the data."""
    token = Sealer(KEY).seal_json({"v": 1}, "symphony-task|s|row-1")
    with pytest.raises(CryptoError) as wrong:
        Sealer(OTHER).open_json(token, "symphony-task|s|row-1")
    with pytest.raises(CryptoError) as moved:
        Sealer(KEY).open_json(token, "symphony-task|s|row-2")
    with pytest.raises(CryptoError) as clear:
        Sealer(KEY).open_json({"v": 1}, "symphony-task|s|row-1")
    assert wrong.value.this_process and clear.value.this_process and not moved.value.this_process
