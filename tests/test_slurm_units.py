"""The SLURM parts that need no cluster: parsing SLURM's output, the batch script, the adapt
policy, the walltime arithmetic, and the accounting sets in a real Redis."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os

import pytest

from symphony.engine import ConfigError, JobSet, LockLost, Observation, RedisConfig, resolve_redis
from symphony.engine.slurm_accounting import SlurmAccounting
from symphony.slurm import ScriptOptions, expand_ids, job_set, parse_sacct, parse_squeue, plan, render, time_limit_s
from symphony.slurm import url_without_password
from symphony.slurm.states import exit_code, timestamp
from symphony.workers.batchjob import BatchJob


# --- what SLURM prints ------------------------------------------------------------------------
def test_squeue_lines_become_observations():
    # recorded from squeue 22.05 --noheader --array --states=all --Format=<states.SQUEUE_FORMAT>
    text = ("1_0|3|COMPLETED|0|2026-12-01T09:44:14|2026-12-01T09:44:16|vm|None|\n"
            "4|4|FAILED|768|2026-12-01T09:44:31|2026-12-01T09:44:31|vm|NonZeroExitCode|\n"
            "5|5|CANCELLED|15|2026-12-01T09:44:30|2026-12-01T09:44:34|vm|None|\n"
            "6|6|FAILED|4021|2026-12-01T09:44:34|2026-12-01T09:44:34|vm|JobLaunchFailure|\n"
            "7_1|7|PENDING|0|N/A|N/A||Priority|\n"
            "8|8|TIMEOUT|9|2026-12-01T09:45:07|2026-12-01T09:46:07|vm|TimeLimit|\n")
    seen = parse_squeue(text)
    assert set(seen) == {"1_0", "4", "5", "6", "7_1", "8"}
    obs = {k: v.observation() for k, v in seen.items()}
    assert obs["1_0"].set is JobSet.COMPLETED and obs["1_0"].job_id == "3" and obs["1_0"].reason == ""
    assert obs["4"].set is JobSet.FAILED and obs["4"].exit_code == "3:0" and obs["4"].reason == "NonZeroExitCode"
    assert obs["5"].set is JobSet.CANCELLED and obs["5"].exit_code == "0:15"
    assert obs["6"].exit_code == "0:53" and obs["6"].reason == "JobLaunchFailure"  # as scontrol shows it
    assert obs["7_1"].set is JobSet.PENDING_AND_RUNNING and seen["7_1"].pending and obs["7_1"].started is None
    assert obs["8"].set is JobSet.TIMEOUT and obs["8"].ended == timestamp("2026-12-01T09:46:07")


def test_sacct_lines_and_collapsed_arrays():
    text = ("1234_0|1235|COMPLETED|0:0|2026-12-01T09:44:14|2026-12-01T09:44:16|n1|None\n"
            "1234_1|1234|CANCELLED by 1000|0:15|2026-12-01T09:44:14|2026-12-01T09:44:20|n2|None\n"
            "1234_[2-4,7%2]|1234|PENDING|0:0|Unknown|Unknown|None assigned|JobArrayTaskLimit\n"
            "99|99|OUT_OF_MEMORY|0:125|2026-12-01T09:44:14|2026-12-01T09:50:00|n3|OutOfMemory\n")
    seen = parse_sacct(text)
    assert sorted(seen) == ["1234_0", "1234_1", "1234_2", "1234_3", "1234_4", "1234_7", "99"]
    assert seen["1234_1"].state == "CANCELLED" and job_set("CANCELLED by 1000") is JobSet.CANCELLED
    assert seen["1234_3"].pending and seen["1234_3"].node == "" and seen["1234_3"].reason == "JobArrayTaskLimit"
    assert seen["99"].observation().set is JobSet.OUT_OF_MEMORY
    assert expand_ids("17") == ["17"] and expand_ids("5_[0-1]") == ["5_0", "5_1"]


@pytest.mark.parametrize("state, want", [("NODE_FAIL", JobSet.NODE_FAIL), ("PREEMPTED", JobSet.PREEMPTED),
                                         ("BOOT_FAIL", JobSet.FAILED), ("DEADLINE", JobSet.FAILED),
                                         ("COMPLETING", JobSet.PENDING_AND_RUNNING), ("REQUEUED", JobSet.PENDING_AND_RUNNING),
                                         ("SUSPENDED", JobSet.PENDING_AND_RUNNING),
                                         ("SOME_FUTURE_STATE", JobSet.PENDING_AND_RUNNING)])
def test_every_slurm_state_has_a_set(state, want):
    assert job_set(state) is want


def test_exit_codes_and_times():
    assert exit_code("0") == "0:0" and exit_code("256") == "1:0" and exit_code("9") == "0:9"
    assert exit_code("2:0") == "2:0" and exit_code("") == "" and exit_code("N/A") == ""
    assert timestamp("N/A") is None and timestamp("NONE") is None and timestamp("Unknown") is None


@pytest.mark.parametrize("text, seconds", [("30", 1800), ("1:30", 90), ("04:00:00", 14400), ("1-12", 129600),
                                           ("2-00:30", 174600), ("1-00:00:10", 86410)])
def test_slurm_time_limits(text, seconds):
    assert time_limit_s(text) == seconds


def test_a_bad_time_limit_is_named():
    with pytest.raises(ConfigError, match="--time 'four hours'"):
        time_limit_s("four hours")


# --- the batch script -----------------------------------------------------------------------
def test_the_script_never_carries_a_password(tmp_path, monkeypatch):
    for var in ("REDIS_PASSWORD_FILE", "SYMPHONY_REDIS_PASSWORD_FILE", "SYMPHONY_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
    config = resolve_redis("redis://app:s3cret-pw@redis.example:6380/2")
    text = render(ScriptOptions(pool="linux", time="01:00:00"), config)
    assert "s3cret-pw" not in text and "SYMPHONY_REDIS_URL" not in text
    assert "taken from the job's environment" in text
    config = resolve_redis("redis://app@redis.example:6380/2", password_file=str(secret))
    text = render(ScriptOptions(pool="linux", time="01:00:00", processes=4), config, password_file=str(secret))
    assert "s3cret-pw" not in text
    assert "export SYMPHONY_REDIS_URL=redis://app@redis.example:6380/2" in text
    assert f"export REDIS_PASSWORD_FILE={secret}" in text
    assert "#SBATCH --signal=B:USR1@300" in text and "#SBATCH --cpus-per-task=4" in text
    assert "exec symphony-worker --pool linux --processes 4 --drain-timeout 270" in text
    assert "SYMPHONY_JOB_END=$(( $(date +%s) + 3600 ))" in text
    assert url_without_password("rediss://:pw@h:1/0?password=pw&x=1") == "rediss://h:1/0?x=1"


@pytest.mark.parametrize("options, message", [
    (dict(time="00:04:00", warning_s=300), "--warning"),
    (dict(warning_s=60, margin_s=60), "--margin"),
    (dict(sbatch=("qos=high",)), "--sbatch"),
    (dict(worker_args=("--redis=redis://:hunter2@h",)), "never goes into a batch script"),
    (dict(job_name="two words"), "white space"),
    (dict(pool="no/slash"), "--pool"),
])
def test_script_options_are_checked_before_anything_is_written(options, message):
    base = {"pool": "linux", **options}
    with pytest.raises(ConfigError, match=message):
        render(ScriptOptions(**base), RedisConfig(url="redis://h:6379/0"))


# --- adapt ------------------------------------------------------------------------------------
def test_adapt_policy():
    # nothing to do: nothing submitted; the minimum is kept
    assert plan(0, 0, 0, minimum=0, maximum=20, per_job=4, max_pending=4).submit == 0
    assert plan(0, 0, 0, minimum=2, maximum=20, per_job=4, max_pending=4).submit == 2
    # proportional to the work, capped by max, and never more than max_pending waiting
    p = plan(1000, 0, 0, minimum=0, maximum=20, per_job=4, max_pending=4)
    assert (p.target, p.submit) == (20, 4)
    assert plan(1000, 4, 0, minimum=0, maximum=20, per_job=4, max_pending=4).submit == 0  # the cluster is not starting them
    assert plan(1000, 1, 16, minimum=0, maximum=20, per_job=4, max_pending=4).submit == 3
    assert plan(10, 0, 0, minimum=0, maximum=20, per_job=4, max_pending=8).target == 3
    # less work: pending jobs are cancelled, running ones are left to finish (burst)
    p = plan(0, 3, 5, minimum=0, maximum=20, per_job=4, max_pending=4)
    assert (p.target, p.cancel, p.submit) == (0, 3, 0)
    assert plan(4, 0, 5, minimum=0, maximum=20, per_job=4, max_pending=4).cancel == 0


# --- the worker's walltime ------------------------------------------------------------------
def test_batch_job_from_the_environment():
    env = {"SLURM_JOB_ID": "1240", "SLURM_ARRAY_JOB_ID": "1234", "SLURM_ARRAY_TASK_ID": "6",
           "SLURM_CLUSTER_NAME": "hpc1", "SYMPHONY_JOB_END": "10000", "SYMPHONY_JOB_WARNING": "300",
           "SYMPHONY_JOB_MARGIN": "30"}
    job = BatchJob.from_env(env)
    assert job.tracked_id == "1234_6" and job.origin() == "slurm-hpc1-1234_6"
    assert job.heartbeat_fields() == {"slurm_job": "1240", "slurm_array": "1234_6", "job_end": 10000.0}
    assert job.due(9699) == (False, False) and job.due(9700) == (True, False) and job.due(9970) == (True, True)
    outside = BatchJob.from_env({"SYMPHONY_JOB_END": "10"})
    assert not outside.in_job and outside.heartbeat_fields() == {} and outside.due(10**12) == (False, False)


def test_the_warning_and_sigterm_set_the_deadlines():
    job = BatchJob.from_env({"SLURM_JOB_ID": "7", "SYMPHONY_JOB_WARNING": "50", "SYMPHONY_JOB_MARGIN": "45",
                             "SYMPHONY_JOB_TERM_GRACE": "1"})
    assert job.due(0) == (False, False)  # no end known: only the signal tells
    job.warned(now=1000)  # SLURM's signal: the end is at most 50 s away
    assert job.stop_at == 1000 and job.handback_at == 1005
    job.terminated(now=1001)  # then SIGTERM: hand back after the grace, if that is sooner
    assert job.handback_at == 1002 and job.due(1002) == (True, True)


# --- the accounting sets in Redis -------------------------------------------------------------
def test_moves_are_atomic_fenced_and_keep_each_id_in_one_set(engine):
    acc = engine.slurm
    assert acc.record("gpu", [("10_0", {"pool": "gpu"}), ("10_1", {"pool": "gpu"}), ("11", {"pool": "gpu"})],
                      pool="gpu", cluster="c1") == 3
    assert acc.record("gpu", [("11", {})]) == 0  # recording twice changes nothing
    lease = acc.lock("tracker:c1", 30)
    assert lease.acquire("test")
    moved, updated = acc.move("gpu", [Observation("10_0", JobSet.COMPLETED, state="COMPLETED", exit_code="0:0"),
                                      Observation("10_1", JobSet.PENDING_AND_RUNNING, state="RUNNING", node="n1"),
                                      Observation("gone", JobSet.FAILED)],
                              token=lease.token, pending=0, running=1, lock="tracker:c1")
    assert (moved, updated) == (1, 2)  # an id never recorded (or cleaned up) is left alone
    sets = acc.membership("gpu")
    assert sets["ALL"] == {"10_0", "10_1", "11"} and sets["COMPLETED"] == {"10_0"}
    assert sets["PENDING_AND_RUNNING"] == {"10_1", "11"}
    tag = acc.tag("gpu")
    assert (tag.pending, tag.running, tag.live, tag.finished, tag.pool, tag.cluster) == (0, 1, 2, 1, "gpu", "c1")
    [job] = acc.jobs("gpu", ["10_1"])
    assert job.node == "n1" and job.state == "RUNNING" and job.pool == "gpu"  # merged with what submit recorded
    # a tracker whose lock expired and was taken over can never move anything
    other = acc.lock("tracker:c1", 30)
    assert not other.acquire("second")
    engine.client.delete(engine.keys.slurm_lock("tracker:c1"))
    assert other.acquire("second")
    with pytest.raises(LockLost):
        acc.move("gpu", [Observation("10_0", JobSet.PENDING_AND_RUNNING)], token=lease.token, lock="tracker:c1")
    assert acc.membership("gpu")["COMPLETED"] == {"10_0"}
    assert lease.acquire("test") is False  # its renewal sees the lock is no longer its own
    # every key of the tag is bounded by a TTL
    for key in (engine.keys.slurm_jobs("gpu"), engine.keys.slurm_set("gpu", "ALL"),
                engine.keys.slurm_set("gpu", "COMPLETED")):
        assert 0 < engine.client.ttl(key) <= 30 * 24 * 3600
    # cleanup refuses while jobs are live, unless forced
    assert not acc.cleanup("gpu").done
    result = acc.cleanup("gpu", force=True)
    assert result.done and result.jobs == 3 and acc.tag("gpu") is None
    assert not [k for k in engine.client.keys(K.fleet + ":slurm:gpu*")]


def test_finished_sets_are_trimmed_to_their_bound(engine):
    acc = SlurmAccounting(engine.client, engine.keys, retain=5)
    ids = [str(n) for n in range(12)]
    acc.record("t", [(i, {}) for i in ids])
    acc.move("t", [Observation(i, JobSet.COMPLETED) for i in ids])
    sets = acc.membership("t")
    assert len(sets["COMPLETED"]) == 5 and sets["ALL"] == sets["COMPLETED"]
    assert engine.client.hlen(engine.keys.slurm_jobs("t")) == 5


def test_the_snapshot_carries_slurm_counts_and_job_ids(engine):
    engine.slurm.record("linux", [("5_0", {}), ("5_1", {})], pool="linux", cluster="c1")
    engine.client.zadd(engine.keys.workers, {"w1": 10**13})
    engine.client.hset(engine.keys.worker("w1"), mapping={"name": "w1", "slurm_job": "6", "slurm_array": "5_0",
                                                          "job_end": "1800000000"})
    snap = engine.snapshot(events=0)
    assert snap.round_trips == 2
    [tag] = snap.slurm
    assert (tag.tag, tag.pool, tag.pending, tag.live) == ("linux", "linux", 2, 2)
    [worker] = snap.workers
    assert (worker.slurm_job_id, worker.slurm_array_id, worker.job_end) == ("6", "5_0", 1800000000.0)
    data = json.loads(snap.to_json())
    assert data["slurm"][0]["counts"]["PENDING_AND_RUNNING"] == 2 and data["workers"][0]["slurm_array_id"] == "5_0"


def test_job_key_values_are_listed_under_their_slurm_job(engine):
    engine.origin = "slurm-c1-5_0"
    engine.job_store("s1", "detect", "row-1").set("score", 0.5)
    engine.job_store("s1", "detect", "row-2").set("score", 0.7)
    assert engine.origin_jobs("slurm-c1-5_0") == [("s1", "detect:row-2"), ("s1", "detect:row-1")]
    assert 0 < engine.client.ttl(engine.keys.origin_jobs("slurm-c1-5_0")) <= 7 * 24 * 3600


def test_status_and_cleanup_verbs(engine, cli):
    engine.slurm.record("linux", [("5_0", {"pool": "linux"}), ("5_1", {"pool": "linux"})], pool="linux", cluster="c1")
    engine.origin = "slurm-c1-5_0"
    engine.job_store("s1", "detect", "row-1").set("score", 0.5)
    code, out, err = cli("slurm", "status")
    assert code == 0 and "tag linux: pool linux, cluster c1; 2 pending, 0 running, 0 finished" in out, out
    code, out, err = cli("slurm", "status", "--json")
    assert {j["id"] for j in json.loads(out)["tags"][0]["jobs"]} == {"5_0", "5_1"}
    code, out, err = cli("slurm", "jobs", "5_0", "--last", "--json")
    assert code == 0 and json.loads(out)["values"] == {"score": "0.5"}, err
    code, out, err = cli("slurm", "cleanup", "--tag", "linux", "--keys", "--yes")
    assert code == 1 and "still pending or running" in err
    assert engine.slurm.tag("linux") is not None  # refused: nothing changed
    code, out, err = cli("slurm", "cleanup", "--tag", "linux", "--keys", "--yes", "--force")
    assert code == 0 and "2 job id(s) forgotten, 1 key/value hash(es) deleted" in out, out
    assert engine.slurm.tag("linux") is None and not engine.client.exists(engine.keys.job("s1", "detect", "row-1"))


def test_script_verb_prints_the_script(cli, monkeypatch):
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    code, out, err = cli("slurm", "script", "--pool", "linux", "--time", "04:00:00", "--partition", "short",
                         "--sbatch=--qos=high")
    assert code == 0, err
    assert out.startswith("#!/bin/bash\n") and "#SBATCH --partition=short" in out and "#SBATCH --qos=high" in out
    assert "exec symphony-worker --pool linux" in out
    code, out, err = cli("slurm", "script", "--pool", "linux", "--time", "00:02:00")
    assert code == 2 and "--warning (300s) must be shorter than --time" in err
    assert os.environ.get("REDIS_URL")  # the cli fixture's server; its URL has no password to leak
