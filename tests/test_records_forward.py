"""``symphony records forward``: every record of the results stream handed on, across a crash,
to an Azure Storage queue (a real Azurite) and to a JSON Lines file."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import ProcessRun, wait_until, worker_env

pytestmark = pytest.mark.slow
RESULTS = K.results


def add_records(r, count: int, start: int = 0, maxlen: int | None = None) -> list[str]:
    """``count`` records as the workers write them; items repeat (retries, reruns), like the real stream."""
    ids = []
    with r.pipeline(transaction=False) as pipe:
        for n in range(start, start + count):
            fields = {"s": "sess", "t": "rvm", "i": f"row-{n % 97:03d}", "st": "completed" if n % 5 else "failed",
                      "a": "1", "ms": str(n), "w": "w1", "e": "" if n % 5 else "boom"}
            if maxlen:
                pipe.xadd(RESULTS, fields, maxlen=maxlen, approximate=False)
            else:
                pipe.xadd(RESULTS, fields)
        ids = pipe.execute()
    return ids


def forward_cmd(redis_url: str, env_extra: dict, *args: str) -> list[str]:
    return [sys.executable, "-m", "symphony.console.commands", "records", "forward", *args]


def drain_queue(azurite, name: str) -> list[dict]:
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(azurite.connection_string, name)
    found = []
    while True:
        page = list(client.receive_messages(messages_per_page=32, visibility_timeout=600, max_messages=32))
        if not page:
            return found
        found += [json.loads(m.content) for m in page]


def queue_length(azurite, name: str) -> int:
    from azure.storage.queue import QueueClient

    try:
        return QueueClient.from_connection_string(azurite.connection_string, name).get_queue_properties() \
            .approximate_message_count
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_the_azure_queue_gets_every_record_as_often_as_the_stream_holds_it_across_a_crash(azurite, redis_url, r,
                                                                                         tmp_path):
    ids = add_records(r, 1500)
    env = worker_env(redis_url, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    argv = forward_cmd(redis_url, {}, "--azure-queue", "records1", "--batch", "25")
    first = ProcessRun(argv, tmp_path / "f1.log", env=env)
    wait_until(lambda: queue_length(azurite, "records1") >= 300, timeout=90, message="some records forwarded")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    first.stop()
    group = "forward:azure-queue:records1"
    pending = {e["message_id"] for e in r.xpending_range(RESULTS, group, min="-", max="+", count=1000)}
    assert len(pending) <= 25
    ids += add_records(r, 300, start=1500)  # more records arrive while it is down
    again = subprocess.run([*argv, "--once"], env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    delivered = drain_queue(azurite, "records1")
    seen = Counter(m["id"] for m in delivered)
    assert set(seen) == set(ids), f"missing {len(set(ids) - set(seen))}"
    twice = {i for i, n in seen.items() if n > 1}
    assert twice <= pending and all(n <= 2 for n in seen.values()), "only what was being sent at the kill may repeat"
    # per item, as many records as the stream holds (up to the repeats of the kill)
    stream_items = Counter(fields["i"] for _, fields in r.xrange(RESULTS))
    queue_items = Counter(m["item"] for i, m in {m["id"]: m for m in delivered}.items())
    assert queue_items == stream_items
    sample = next(m for m in delivered if m["state"] == "failed")
    assert sample["session"] == "sess" and sample["error"] == "boom" and isinstance(sample["attempts"], int)
    assert r.xpending(RESULTS, group)["pending"] == 0


def test_the_jsonl_sink_holds_each_record_exactly_once_across_a_crash(redis_url, r, tmp_path):
    ids = add_records(r, 3000)
    out = tmp_path / "records.jsonl"
    env = worker_env(redis_url)
    argv = forward_cmd(redis_url, {}, "--jsonl", str(out), "--batch", "7")
    first = ProcessRun(argv, tmp_path / "f1.log", env=env)
    wait_until(lambda: out.exists() and out.stat().st_size > 20000, timeout=60, message="some records written")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    first.stop()
    again = subprocess.run([*argv, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [line["id"] for line in lines] == ids  # each once, in the stream's order


def test_a_forwarder_that_fell_too_far_behind_says_so(redis_url, r, tmp_path):
    add_records(r, 50)
    out = tmp_path / "records.jsonl"
    env = worker_env(redis_url)
    argv = forward_cmd(redis_url, {}, "--jsonl", str(out), "--once")
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "fell behind" not in first.stderr, first.stderr
    add_records(r, 3000, start=50, maxlen=1000)  # the cap trims 2,050 records it never read
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "the forwarder fell behind: 2,000 record(s) were trimmed" in second.stderr, second.stderr
    assert len(out.read_text().splitlines()) == 50 + 1000


def test_no_credentials_for_the_queue_is_one_line(redis_url, tmp_path):
    env = {k: v for k, v in worker_env(redis_url).items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    pytest.importorskip("azure.storage.queue")
    out = subprocess.run(forward_cmd(redis_url, {}, "--azure-queue", "q", "--once"), env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("symphony: no Azure Storage credentials") and len(out.stderr.splitlines()) == 1


def test_a_running_forwarder_hands_on_new_records_and_stops_cleanly_on_sigterm(redis_url, r, tmp_path):
    out = tmp_path / "records.jsonl"
    argv = forward_cmd(redis_url, {}, "--jsonl", str(out), "--from", "now")
    add_records(r, 10)  # before the group exists: --from now leaves them out
    run = ProcessRun(argv, tmp_path / "f.log", env=worker_env(redis_url))
    wait_until(lambda: any(g["name"].startswith("forward:jsonl:") for g in r.xinfo_groups(RESULTS)),
               message="the forwarder's group")
    ids = add_records(r, 25, start=10)
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 25, message="the new records")
    assert run.stop() == 0
    assert "forwarded 25 record(s)" in run.output()
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ids
