"""Azure Scheduled Events: a VM that Azure takes away gives its work back first.

Azure announces, through the instance metadata service, what it is about to do to a VM: a Spot
eviction (``Preempt``, at least 30 s ahead), a scale-in or deletion (``Terminate``, when the
scale set's termination notification is on), a maintenance ``Reboot`` or ``Redeploy``. The
supervisor polls the endpoint (``--scheduled-events URL``: on Azure
``http://169.254.169.254/metadata/scheduledevents``; tests point it at a fake on loopback) about
once a second. On such an event for this VM it does what a stop does (stopping.py): no new
claims, running tasks finish or are handed back in time (at the latest
:data:`HANDBACK_MARGIN_S` before the event's ``NotBefore``), prefetched tasks go back at once;
then it acknowledges the event (the ``POST`` that lets Azure go ahead at once) and exits 0, so
that a service manager does not start it again.

``Freeze`` (a pause of seconds) is left alone. The endpoint unreachable (not on Azure, IMDS busy)
is said once and retried with backoff; it never stops the worker.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

from symphony.engine import Backoff

log = logging.getLogger("symphony.supervisor")
API_VERSION = "2020-07-01"
TAKEN_AWAY = ("Preempt", "Terminate", "Reboot", "Redeploy")
HANDBACK_MARGIN_S = 10.0  # running tasks go back at the latest this long before NotBefore
POLL_S = 1.0


@dataclass(frozen=True)
class ScheduledEvent:
    id: str
    type: str
    status: str
    resources: tuple[str, ...]
    not_before: float | None  # epoch seconds; None: not given (it may start at any moment)
    source: str = ""

    def concerns(self, vm_name: str) -> bool:
        """An event for this VM (no resources named: the whole deployment, this VM included)."""
        return not self.resources or vm_name.lower() in {r.lower() for r in self.resources}


def parse_events(document: Mapping[str, Any]) -> list[ScheduledEvent]:
    out = []
    for raw in document.get("Events") or []:
        when = str(raw.get("NotBefore") or "").strip()
        try:
            not_before = parsedate_to_datetime(when).timestamp() if when else None
        except (TypeError, ValueError):
            not_before = None
        out.append(ScheduledEvent(id=str(raw.get("EventId", "")), type=str(raw.get("EventType", "")),
                                  status=str(raw.get("EventStatus", "")),
                                  resources=tuple(str(r) for r in raw.get("Resources") or ()),
                                  not_before=not_before, source=str(raw.get("EventSource", ""))))
    return out


def taking_this_vm(events: list[ScheduledEvent], vm_name: str) -> ScheduledEvent | None:
    """The earliest scheduled event that takes this VM away, if any."""
    mine = [e for e in events if e.type in TAKEN_AWAY and e.status == "Scheduled" and e.concerns(vm_name)]
    mine.sort(key=lambda e: e.not_before if e.not_before is not None else 0.0)
    return mine[0] if mine else None


class ScheduledEventsClient:
    """The metadata endpoint: the events, this VM's name, the acknowledgement."""

    def __init__(self, url: str, *, timeout_s: float = 5.0):
        self.url = url.split("?", 1)[0].rstrip("/")
        self.timeout_s = timeout_s
        parts = urllib.parse.urlsplit(self.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def _request(self, url: str, body: bytes | None = None) -> bytes:
        headers = {"Metadata": "true"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
        # the metadata service is never reached through a proxy
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=self.timeout_s) as response:
            return response.read()

    def events(self) -> tuple[int, list[ScheduledEvent]]:
        raw = self._request(f"{self.url}?api-version={API_VERSION}")
        document = json.loads(raw.decode() or "{}")
        return int(document.get("DocumentIncarnation", 0) or 0), parse_events(document)

    def vm_name(self) -> str:
        """This VM's name as the events list it (IMDS compute name), else the host name."""
        try:
            name = self._request(f"{self.origin}/metadata/instance/compute/name?api-version=2021-02-01&format=text")
            text = name.decode().strip()
            if text:
                return text
        except (OSError, ValueError, urllib.error.URLError):
            pass
        return socket.gethostname().split(".")[0]

    def acknowledge(self, event_id: str) -> None:
        self._request(f"{self.url}?api-version={API_VERSION}",
                      json.dumps({"StartRequests": [{"EventId": event_id}]}).encode())


class ScheduledEventsWatcher:
    """A thread that polls the endpoint and remembers the event that takes this VM away."""

    def __init__(self, url: str, *, poll_s: float = POLL_S):
        self.client = ScheduledEventsClient(url)
        self.poll_s = poll_s
        self.event: ScheduledEvent | None = None
        self.seen_at: float | None = None  # epoch seconds
        self._stop = threading.Event()
        self._got = threading.Event()
        self._thread: threading.Thread | None = None
        self.vm_name = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduled-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        self.vm_name = self.client.vm_name()
        log.info("watching Azure Scheduled Events at %s for VM %s", self.client.url, self.vm_name)
        backoff = Backoff(initial=self.poll_s, maximum=60.0)
        failing = False
        while not self._stop.is_set() and self.event is None:
            try:
                _, events = self.client.events()
            except (OSError, ValueError, urllib.error.URLError) as exc:
                if not failing:
                    log.warning("Azure Scheduled Events at %s unavailable (%s); retrying with backoff",
                                self.client.url, getattr(exc, "reason", exc))
                    failing = True
                self._stop.wait(backoff.next_delay())
                continue
            if failing:
                log.info("Azure Scheduled Events at %s answer again", self.client.url)
                failing = False
            backoff.reset()
            event = taking_this_vm(events, self.vm_name)
            if event is not None:
                self.seen_at = time.time()
                self.event = event
                self._got.set()
                return
            self._stop.wait(self.poll_s)

    def handback_at(self, drain_timeout_s: float) -> float:
        """When running tasks must go back (epoch seconds): after the drain window, but at the
        latest HANDBACK_MARGIN_S before the event may start."""
        assert self.event is not None and self.seen_at is not None
        at = self.seen_at + drain_timeout_s
        if self.event.not_before is not None:
            at = min(at, self.event.not_before - HANDBACK_MARGIN_S)
        else:
            at = self.seen_at
        return at

    def acknowledge(self) -> bool:
        """Tell Azure it may go ahead (True when the POST was answered)."""
        if self.event is None:
            return False
        try:
            self.client.acknowledge(self.event.id)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            log.warning("could not acknowledge Azure Scheduled Event %s (%s); Azure goes ahead at its NotBefore",
                        self.event.id, getattr(exc, "reason", exc))
            return False
        log.info("acknowledged Azure Scheduled Event %s (%s): this VM may go", self.event.id, self.event.type)
        return True
