"""Azure Scheduled Events: a fake metadata endpoint on loopback announces a Preempt of this VM
with a 30 s deadline; the worker stops claiming, hands its running task back before the deadline,
acknowledges the event (the POST arrives), and exits; the task completes on another worker."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import re
import threading
import time
import uuid
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from symphony.engine import load_session
from symphony.engine.initialize import initialize_session
from symphony.workers.scheduled_events import (HANDBACK_MARGIN_S, ScheduledEventsWatcher, parse_events,
                                               taking_this_vm)
from tests.helpers import WorkerRun, wait_until, worker_env, write_pipeline, write_session

VM = "scan-linux_3"
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def logged_at(output: str, text: str) -> float:
    """When a worker logged the first line containing ``text``, by its own clock (its text log
    lines are dated in local time, to the second): epoch seconds."""
    for line in output.splitlines():
        match = LINE.match(line)
        if match and text in line:
            return time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
    raise AssertionError(f"the worker never logged {text!r}:\n{output[-3000:]}")


class FakeMetadata:
    """/metadata/scheduledevents (GET: the document; POST: acknowledgements) and the VM's name."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.incarnation = 1
        self.acks: list[tuple[float, dict, dict]] = []  # (when, body, headers)
        self.gets = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.headers.get("Metadata") != "true":
                    return self._send(400, b'{"error": "Bad request. Required metadata header not specified"}')
                if self.path.startswith("/metadata/instance/compute/name"):
                    return self._send(200, VM.encode(), "text/plain")
                if self.path.startswith("/metadata/scheduledevents?api-version="):
                    fake.gets += 1
                    doc = {"DocumentIncarnation": fake.incarnation, "Events": fake.events}
                    return self._send(200, json.dumps(doc).encode())
                self._send(404, b"{}")

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.startswith("/metadata/scheduledevents") or self.headers.get("Metadata") != "true":
                    return self._send(400, b"{}")
                fake.acks.append((time.time(), body, dict(self.headers)))
                self._send(200, b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/metadata/scheduledevents"

    def announce(self, kind: str, seconds: float, resources=(VM,)) -> dict:
        event = {"EventId": str(uuid.uuid4()).upper(), "EventType": kind, "ResourceType": "VirtualMachine",
                 "Resources": list(resources), "EventStatus": "Scheduled",
                 "NotBefore": formatdate(time.time() + seconds, usegmt=True), "Description": "",
                 "EventSource": "Platform", "DurationInSeconds": -1}
        self.events.append(event)
        self.incarnation += 1
        return event

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def metadata():
    fake = FakeMetadata()
    yield fake
    fake.close()


def test_which_events_take_this_vm_away():
    doc = {"DocumentIncarnation": 3, "Events": [
        {"EventId": "a", "EventType": "Freeze", "EventStatus": "Scheduled", "Resources": [VM],
         "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT"},
        {"EventId": "b", "EventType": "Reboot", "EventStatus": "Scheduled", "Resources": ["other_1"],
         "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT"},
        {"EventId": "c", "EventType": "Terminate", "EventStatus": "Started", "Resources": [VM], "NotBefore": ""},
        {"EventId": "d", "EventType": "Preempt", "EventStatus": "Scheduled", "Resources": [VM.upper()],
         "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT"}]}
    events = parse_events(doc)
    assert [e.id for e in events] == ["a", "b", "c", "d"] and events[2].not_before is None
    chosen = taking_this_vm(events, VM)
    assert chosen.id == "d" and chosen.not_before == 1474309787.0
    assert taking_this_vm(events[:3], VM) is None  # a freeze, another VM's reboot, one already started


def test_the_hand_back_comes_before_the_deadline(metadata):
    watcher = ScheduledEventsWatcher(metadata.url, poll_s=0.05)
    watcher.start()
    try:
        wait_until(lambda: metadata.gets >= 1, message="the first poll")
        assert watcher.event is None
        metadata.announce("Reboot", 30, resources=["another_vm"])
        metadata.announce("Preempt", 30)
        wait_until(lambda: watcher.event is not None, message="the event")
        assert watcher.vm_name == VM and watcher.event.type == "Preempt"
        assert watcher.handback_at(5.0) == pytest.approx(watcher.seen_at + 5.0)
        assert watcher.handback_at(60.0) == watcher.event.not_before - HANDBACK_MARGIN_S
        assert watcher.acknowledge()
        assert metadata.acks[0][1] == {"StartRequests": [{"EventId": watcher.event.id}]}
    finally:
        watcher.stop()


def test_an_unreachable_endpoint_is_said_once_and_never_stops_anything(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="symphony.supervisor")
    watcher = ScheduledEventsWatcher("http://127.0.0.1:9/metadata/scheduledevents", poll_s=0.01)
    watcher.start()
    try:
        wait_until(lambda: "unavailable" in caplog.text, message="the warning")
        time.sleep(0.3)  # several retries: still one line (a pause, not a synchronisation)
        assert caplog.text.count("unavailable") == 1 and watcher.event is None
    finally:
        watcher.stop()


@pytest.mark.slow
def test_a_preempted_worker_hands_back_within_the_deadline_and_another_completes_the_task(r, redis_url, tmp_path,
                                                                                         metadata):
    # the task hangs on the doomed VM's worker, and takes no time on the other one
    script = ("import json, os, time\n"
              "time.sleep(600 if os.environ.get('DOOMED_VM') else 0)\n"
              "print(json.dumps(dict(done_on=os.environ.get('WORKER_NAME'))))")
    stage = {"name": "work", "pool": "linux", "command": ["{python}", "-c", script], "stdout": "output",
             "output": "{root}/{session}/{stage}/{item}.json", "timeout": 900}
    write_pipeline(tmp_path / "pipe.yaml", [stage])
    session = write_session(tmp_path / "s1.yaml", "s1", "pipe.yaml", ["long"], root=str(tmp_path / "data"))
    from symphony.engine import Engine, resolve_redis

    with Engine(resolve_redis(redis_url)) as engine:
        initialize_session(engine, load_session(session))
    doomed = WorkerRun(redis_url, "--pool", "linux", "--processes", "1", "--name", "doomed",
                       "--drain-timeout", "120", "--scheduled-events", metadata.url, log_dir=tmp_path,
                       env=worker_env(redis_url, DOOMED_VM="1", WORKER_NAME="doomed"))
    wait_until(lambda: r.hget(K.stats("s1"), "work|running") == "1", timeout=60, message="the task to start")
    wait_until(lambda: metadata.gets >= 1, message="the worker to poll the events")
    rescuer = WorkerRun(redis_url, "--pool", "linux", "--processes", "1", "--name", "rescuer", log_dir=tmp_path,
                        env=worker_env(redis_url, WORKER_NAME="rescuer"))
    event = metadata.announce("Preempt", 30)
    not_before = parsedate_to_datetime(event["NotBefore"]).timestamp()  # Azure's deadline, as the VM reads it
    code = doomed.wait(90)  # a deadline for the poll only: the verdict is the worker's own clock's
    assert code == 0, doomed.output()
    # the worker's own log lines say when it acknowledged and when its last process ended: both
    # before the event's NotBefore (lines are dated to the second, rounded down: a line dated the
    # second of NotBefore itself may be after it, and fails)
    acked, stopped = (logged_at(doomed.output(), text) for text in ("acknowledged Azure Scheduled Event",
                                                                     "all workers stopped"))
    assert acked <= stopped < not_before, (f"acknowledged at {acked}, exited at {stopped}, "
                                           f"{stopped - not_before:+.0f}s from the deadline")
    # acknowledged, once every task was back
    assert [a[1] for a in metadata.acks] == [{"StartRequests": [{"EventId": event["EventId"]}]}]
    assert metadata.acks[0][2].get("Metadata") == "true"
    output = tmp_path / "data" / "s1" / "work" / "long.json"
    wait_until(output.is_file, timeout=60, message="the other worker to complete the task")
    assert json.loads(output.read_text()) == {"done_on": "rescuer"}
    wait_until(lambda: r.hget(K.stats("s1"), "work|completed") == "1", message="the completion")
    log = doomed.output()
    assert "Preempt of this VM" in log and "handing running tasks back" in log and "acknowledged" in log
    print(f"preempt announced 30 s ahead: worker exited {not_before - stopped:.0f}s before the deadline "
          "(by its own log)")
    rescuer.stop()
