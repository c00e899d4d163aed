"""symphony scale vmss, offline: azure-mgmt-compute's real client code over an injected transport
answering recorded ARM JSON (tests/data/azure), the scale set's state kept by the fake; asserts
the requests sent. Capacity follows the pool's queued work up and down within the bounds, steps
and cooldown; a VM running a task is drained and deleted only once idle; 429 and 403 give one
clear message and a backoff."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import copy
import json
import logging
import re
import time

import pytest

pytest.importorskip("azure.mgmt.compute", reason="the scaler needs the azure extra (azure-mgmt-compute)")

from symphony.azure.vmss import EngineFleet, ScaleLimits, ScaleSetArm, VmssScaler, wanted  # noqa: E402
from symphony.engine import load_session  # noqa: E402
from symphony.engine.initialize import initialize_session  # noqa: E402
from tests.azure_fake import RG, SUB, AzureFake, FakeCredential, recorded, transport_for, vmss_id  # noqa: E402
from tests.helpers import WorkerRun, wait_until, worker_env, write_pipeline, write_session  # noqa: E402

NAME = "scan-linux"
BASE = vmss_id(NAME)


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out.rjust(6, "0")


class ScaleSetFake:
    """One Uniform scale set as ARM answers for it (from the recordings), its VMs kept here."""

    def __init__(self, fake: AzureFake, count: int = 0):
        self.fake = fake
        self.instances: list[tuple[str, str]] = []
        self.next_id = 0
        self.add(count)
        fake.route("GET", re.escape(BASE) + "$", lambda seen: (200, {}, self.document()))
        fake.route("PATCH", re.escape(BASE) + "$", self.patch)
        fake.route("GET", re.escape(BASE) + "/virtualMachines$", self.list)
        fake.route("POST", re.escape(BASE) + "/delete$", self.delete)

    def add(self, count: int) -> None:
        for _ in range(count):
            self.instances.append((str(self.next_id), f"{NAME}{base36(self.next_id)}"))
            self.next_id += 1

    @property
    def hosts(self) -> list[str]:
        return [h for _, h in self.instances]

    def document(self, state: str = "Succeeded") -> dict:
        doc = recorded("arm_vmss_get_linux.json")
        doc["sku"]["capacity"] = len(self.instances)
        doc["properties"]["provisioningState"] = state
        return doc

    def patch(self, seen):
        capacity = seen.body["sku"]["capacity"]
        self.add(capacity - len(self.instances))
        return 200, {}, self.document("Updating")

    def list(self, seen):
        template = recorded("arm_vmss_vms_linux.json")["value"][0]
        out = []
        for instance_id, host in self.instances:
            vm = copy.deepcopy(template)
            vm["instanceId"], vm["name"] = instance_id, f"{NAME}_{instance_id}"
            vm["id"] = f"{BASE}/virtualMachines/{instance_id}"
            vm["properties"]["osProfile"]["computerName"] = host
            out.append(vm)
        return 200, {}, {"value": out}

    def delete(self, seen):
        gone = set(seen.body["instanceIds"])
        self.instances = [i for i in self.instances if i[0] not in gone]
        return 202, {"Location": f"https://management.azure.com/subscriptions/{SUB}/providers/Microsoft.Compute/"
                                 "locations/westeurope/operations/3c1d2e4f?api-version=2024-07-01"}, {}

    def changes(self) -> list[tuple[str, object]]:
        """The requests that change the scale set: (PATCH, capacity) and (DELETE, instance ids)."""
        out = []
        for s in self.fake.arm_calls():
            if s.method == "PATCH":
                out.append(("PATCH", s.body["sku"]["capacity"]))
            elif s.method == "POST" and s.path.endswith("/delete"):
                out.append(("DELETE", tuple(s.body["instanceIds"])))
        return out


COOLDOWN_KEY = K.scale_cooldown(f"vmss/{SUB}/{RG}/{NAME}".lower())


def cooled_down(r) -> None:
    """The cooldown runs out: its key's TTL ends (Redis expires it; no waiting out the minutes)."""
    r.pexpire(COOLDOWN_KEY, 1)
    wait_until(lambda: not r.exists(COOLDOWN_KEY), message="the cooldown key to expire")


def make(engine, fake: AzureFake, limits: ScaleLimits) -> VmssScaler:
    arm = ScaleSetArm(SUB, RG, NAME, credential=FakeCredential(), transport=transport_for(fake))
    return VmssScaler(EngineFleet(engine), arm, "linux", limits)


def session_with(engine, tmp_path, items: int, name: str = "s1", command=None):
    stage = {"name": "work", "pool": "linux", "output": "{root}/{session}/{stage}/{item}.json", "stdout": "output",
             "command": command or ["{python}", "-c", "print(1)"]}
    write_pipeline(tmp_path / f"{name}-pipe.yaml", [stage])
    path = write_session(tmp_path / f"{name}.yaml", name, f"{name}-pipe.yaml", [f"i{n}" for n in range(items)],
                         root=str(tmp_path / "data"))
    initialize_session(engine, load_session(path))


def test_the_policy_keeps_bounds_and_steps():
    limits = ScaleLimits(minimum=1, maximum=10, per_vm=4, max_step=3)
    assert wanted(0, 0, limits) == 1  # the minimum
    assert wanted(100, 1, limits) == 4  # ceil(100/4)=25, max 10, at most 3 more at once
    assert wanted(100, 9, limits) == 10
    assert wanted(9, 10, limits) == 7  # 3 VMs wanted: three fewer at once
    assert wanted(9, 3, limits) == 3


def test_capacity_follows_queued_work_up_and_down_within_bounds_and_cooldown(engine, r, tmp_path):
    fake = AzureFake()
    vmss = ScaleSetFake(fake, count=0)
    scaler = make(engine, fake, ScaleLimits(minimum=1, maximum=3, per_vm=4, max_step=2, cooldown_s=60))
    session_with(engine, tmp_path, items=20)  # 20 queued tasks: 5 VMs wanted, 3 at most
    first = scaler.step()
    assert (first.work, first.capacity, first.target, first.set_capacity) == (20, 0, 2, 2)  # a step of at most 2
    assert vmss.changes() == [("PATCH", 2)]
    # the SDK's requests: a GET of the scale set, a LIST of its VMs, the PATCH of its capacity
    calls = [(s.method, s.path[len(BASE):] or "/") for s in fake.arm_calls()]
    assert calls == [("GET", "/"), ("GET", "/virtualMachines"), ("PATCH", "/")]
    patch = fake.arm_calls()[-1]
    assert patch.params["api-version"] and patch.headers["Authorization"].startswith("Bearer ")
    assert patch.body == {"sku": {"capacity": 2}}
    assert 0 < r.pttl(COOLDOWN_KEY) <= 60_000
    held = scaler.step()
    assert held.cooling and held.set_capacity is None and vmss.changes() == [("PATCH", 2)]
    cooled_down(r)
    assert scaler.step().set_capacity == 3 and vmss.changes()[-1] == ("PATCH", 3)
    assert scaler.step().set_capacity is None  # at the maximum: no request
    assert len(vmss.changes()) == 2
    # the work is gone (cancelled): down to the minimum, idle VMs first, drained then deleted;
    # a VM an operator drained (to look at it) is neither chosen nor deleted
    engine.drain(host=f"{NAME}000000", idle=True, by="alice")
    engine.cancel("s1")
    held = scaler.step()
    assert held.cooling and held.target == 1 and len(vmss.changes()) == 2  # scaling in waits for it too
    cooled_down(r)
    down = scaler.step()
    assert down.work == 0 and down.target == 1
    assert vmss.changes()[-1] == ("DELETE", ("1", "2"))  # the next two by name: none runs a task
    assert vmss.hosts == [f"{NAME}000000"]
    assert [(d.target, d.by) for d in engine.drains()] == [(f"{NAME}000000", "alice")]  # ours removed with them
    cooled_down(r)
    assert scaler.step().target == 1 and len(vmss.changes()) == 3  # at the minimum: nothing more


@pytest.mark.slow
def test_a_vm_running_a_task_is_drained_and_deleted_only_once_idle(engine, r, redis_url, tmp_path):
    """Two VMs (workers whose host names are the scale set's computer names), each running a task
    that waits for its gate file; the work needs one VM: one is drained, finishes its task (not
    handed back), and only then is its instance deleted."""
    fake = AzureFake()
    vmss = ScaleSetFake(fake, count=2)
    gates = tmp_path / "gates"
    gates.mkdir()
    wait = (f"import os, time, json\nitem = os.environ['SYMPHONY_ITEM']\n"
            f"while not os.path.exists(os.path.join({str(gates)!r}, item)): time.sleep(0.05)\n"
            f"print(json.dumps(dict(host=os.environ['SYMPHONY_HOSTNAME'])))")
    session_with(engine, tmp_path, items=2, command=["{python}", "-c", wait])
    workers = {host: WorkerRun(redis_url, "--pool", "linux", "--processes", "1", "--name", host, log_dir=tmp_path,
                               env=worker_env(redis_url, SYMPHONY_HOSTNAME=host)) for host in vmss.hosts}
    fleet = EngineFleet(engine)
    wait_until(lambda: sum(fleet.busy_hosts().values()) == 2 and len(fleet.busy_hosts()) == 2, timeout=60,
               message="both VMs to run a task")
    scaler = make(engine, fake, ScaleLimits(minimum=0, maximum=4, per_vm=2, max_step=2, cooldown_s=0))
    first = scaler.step()
    victim = f"{NAME}000000"  # both run one task: the first by name
    assert (first.work, first.target, first.draining, first.deleted) == (2, 1, (victim,), ())
    assert [d.target for d in engine.drains()] == [victim]
    assert scaler.step().deleted == () and not [c for c in vmss.changes() if c[0] == "DELETE"]
    # its task finishes (a drain without --now lets it), then the VM goes
    (current,) = [w.current for w in engine.snapshot(events=0).workers if w.host == victim and w.current]
    victim_item = current.split(":", 1)[1].split("@", 1)[0]  # stage:item@session
    (gates / victim_item).write_text("")
    output = tmp_path / "data" / "s1" / "work" / f"{victim_item}.json"
    wait_until(output.is_file, message="the drained VM's task to complete")
    assert json.loads(output.read_text()) == {"host": victim}  # finished there, not handed back
    wait_until(lambda: victim not in fleet.busy_hosts(), message="the drained VM to be idle")
    done = scaler.step()
    assert done.deleted == ("0",) and vmss.changes() == [("DELETE", ("0",))]
    assert vmss.hosts == [f"{NAME}000001"] and not list(engine.drains())
    assert fleet.busy_hosts() == {f"{NAME}000001": 1}  # the other VM's task still runs
    for item in ("i0", "i1"):
        (gates / item).write_text("")
    wait_until(lambda: r.hget(K.stats("s1"), "work|completed") == "2", message="both tasks completed")
    for worker in workers.values():
        worker.stop()


def test_throttling_and_a_forbidden_identity_give_one_clear_message_and_a_backoff(engine, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="symphony.scale")
    fake = AzureFake()
    ScaleSetFake(fake, count=1)
    fake.route("GET", re.escape(BASE) + "/virtualMachines$", (429, {"Retry-After": "120"}, "arm_429_throttled.json"))
    scaler = make(engine, fake, ScaleLimits(maximum=4, per_vm=1, interval_s=10))
    session_with(engine, tmp_path, items=3)
    for _ in range(3):
        step = scaler.step()
        assert "throttling us (429)" in step.problem and step.set_capacity is None
    assert caplog.text.count("throttling us (429)") == 1  # said once
    assert scaler._next_delay >= 120  # Retry-After honoured
    # the identity may read but not write: 403 on the PATCH
    fake = AzureFake()
    ScaleSetFake(fake, count=1)
    fake.route("PATCH", re.escape(BASE) + "$", (403, {}, "arm_403_authorization.json"))
    scaler = make(engine, fake, ScaleLimits(maximum=4, per_vm=1, interval_s=10))
    caplog.clear()
    messages = {scaler.step().problem for _ in range(2)}
    (message,) = messages
    assert "not allowed (403) to manage scale set scan-linux" in message and "Virtual Machine Contributor" in message
    assert caplog.text.count("not allowed (403)") == 1
    assert scaler._next_delay >= 20  # the interval, doubled after the second failure
    # and it recovers by itself
    fake.route("PATCH", re.escape(BASE) + "$", lambda seen: (200, {}, recorded("arm_vmss_get_linux.json")))
    assert scaler.step().set_capacity == 3 and "answers again" in caplog.text


def test_the_cli_once(engine, tmp_path, monkeypatch, redis_url, capsys):
    from symphony.console.commands import scale
    from symphony.console.commands.main import build_parser

    fake = AzureFake()
    vmss = ScaleSetFake(fake, count=0)
    session_with(engine, tmp_path, items=5)
    monkeypatch.setenv("REDIS_URL", redis_url)
    args = build_parser().parse_args(["scale", "vmss", "--pool", "linux", "--scale-set", NAME, "--subscription", SUB,
                                      "--resource-group", RG, "--per-vm", "2", "--max", "10", "--once"])
    assert scale.run_vmss(args, credential=FakeCredential(), transport=transport_for(fake)) == 0
    assert vmss.changes() == [("PATCH", 3)]
    assert "work 5, 0 VM(s), target 3: capacity 0 -> 3" in capsys.readouterr().out
    args = build_parser().parse_args(["scale", "vmss", "--pool", "linux", "--scale-set", NAME, "--once"])
    monkeypatch.delenv("SYMPHONY_AZURE_SUBSCRIPTION", raising=False)
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    from symphony.engine import ConfigError

    with pytest.raises(ConfigError, match="--subscription/--resource-group"):
        scale.run_vmss(args, credential=FakeCredential(), transport=transport_for(fake))
    assert time.time()


def test_the_cooldown_holds_across_separate_once_runs(engine, r, tmp_path, monkeypatch, redis_url, capsys):
    """An operator runs ``--once`` from cron: the second run within the cooldown sends no PATCH
    (the last change's time is kept in Redis, per scale set, with the cooldown as its TTL)."""
    from symphony.console.commands import scale
    from symphony.console.commands.main import build_parser

    fake = AzureFake()
    vmss = ScaleSetFake(fake, count=0)
    session_with(engine, tmp_path, items=6)
    monkeypatch.setenv("REDIS_URL", redis_url)

    def once() -> str:
        args = build_parser().parse_args(["scale", "vmss", "--pool", "linux", "--scale-set", NAME, "--subscription",
                                          SUB, "--resource-group", RG, "--per-vm", "2", "--max", "10", "--max-step",
                                          "1", "--cooldown", "10m", "--once"])
        assert scale.run_vmss(args, credential=FakeCredential(), transport=transport_for(fake)) == 0
        return capsys.readouterr().out

    assert "capacity 0 -> 1" in once() and vmss.changes() == [("PATCH", 1)]
    key = COOLDOWN_KEY
    assert 0 < r.pttl(key) <= 600_000  # the cooldown is the key's TTL (server time)
    assert "cooling down" in once()
    assert vmss.changes() == [("PATCH", 1)]  # the second run within the cooldown: no PATCH
    assert [s.method for s in fake.arm_calls()].count("PATCH") == 1
    # another scale set has its own cooldown; and once this one's has run out (its key expired)
    # the next run changes the capacity again
    assert r.exists(key.replace(NAME.lower(), "other")) == 0
    cooled_down(r)
    assert "capacity 1 -> 2" in once() and vmss.changes() == [("PATCH", 1), ("PATCH", 2)]
