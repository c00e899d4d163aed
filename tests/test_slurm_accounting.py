"""The tracker on a cluster with SLURM accounting (slurmdbd over a private MariaDB): it asks sacct,
and so sorts out jobs that ended long before it started, which the controller has forgotten."""
from __future__ import annotations

import json
import os
import time

import pytest

from symphony.engine import load_session
from symphony.engine.initialize import initialize_session
from symphony.slurm import SlurmClient, Tracker
from tests.helpers import ROOT, Poll
from tests.slurm_cluster import SlurmCluster, unavailable
from tests.test_slurm import job_args, pipeline, single_set, stage

pytestmark = pytest.mark.skipif(unavailable(accounting=True) is not None, reason=unavailable(accounting=True) or "")


@pytest.fixture(scope="module")
def cluster():
    try:
        c = SlurmCluster(name="symacct", accounting=True, min_job_age=2).start()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"the test SLURM cluster with accounting did not start: {exc}")
    yield c
    c.stop()


@pytest.fixture
def slurm(cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    yield cluster
    cluster.cancel_all()


@pytest.mark.slow
def test_a_tracker_started_late_sorts_out_past_jobs_with_sacct(slurm, engine, cli, tmp_path):
    session = pipeline(tmp_path, [stage("work", "tests.handlers:ok")], ["x1", "x2"])
    initialize_session(engine, load_session(session))
    code, out, err = cli("slurm", "submit", "--json", "--pool", "hpc", "--jobs", "2", "--burst", *job_args(tmp_path))
    assert code == 0, err
    done = json.loads(out)["ids"]
    code, out, err = cli("slurm", "submit", "--json", "--pool", "hpc", "--jobs", "3", "--sbatch=--begin=now+3600",
                         *job_args(tmp_path))
    assert code == 0, err
    waiting = json.loads(out)["ids"]
    client = SlurmClient()
    assert client.has_accounting()

    # no tracker ran while the first two ran and ended; the controller forgets them (MinJobAge=2)
    poll = Poll(lambda: not client.squeue(done) and len(client.sacct(done)) == 2, 120,
                "the controller to forget the finished jobs and sacct to know them")
    while not poll.ready():
        time.sleep(0.5)

    tracker = Tracker(engine, client, interval_s=0.5)
    try:
        report = tracker.poll()
        assert report.active and report.source == "sacct" and report.jobs == 5, report
        where = single_set(engine, "hpc")
        assert {i: where[i] for i in done} == {i: "COMPLETED" for i in done}, where  # not UNKNOWN
        assert {where[i] for i in waiting} == {"PENDING_AND_RUNNING"}  # sacct shows them as one line: 1234_[0-2]
        assert report.pending == 3 and engine.slurm.tag("hpc").pending == 3
        slurm.run("scancel", waiting[0].split("_")[0])
        poll = Poll(lambda: tracker.poll() and {single_set(engine, "hpc")[i] for i in waiting} == {"CANCELLED"}, 60,
                    "the cancelled array to land in CANCELLED", lambda: f"\n{single_set(engine, 'hpc')}")
        while not poll.ready():
            time.sleep(0.5)
    finally:
        tracker.close()
