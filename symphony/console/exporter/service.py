"""The exporter's HTTP service: ``/metrics`` for Prometheus, ``/healthz`` for a load balancer.

``/metrics`` is prometheus-client's text format (gzip when asked), written once per reading
of Redis however many scrapers share it, with the exporter's and the process's own figures.
``/healthz``
answers 200 when Redis answered the latest read and the figures are fresh, else 503, with a JSON
body saying which. Requests are served by threads; they share one reading (see ``reading.py``).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import ProcessCollector

from symphony.engine import Engine, PolicyNotice

from .collector import SymphonyCollector
from .reading import CACHE_S, STALE_S, Reading, ReadingCache, read_everything

log = logging.getLogger("symphony.exporter")
DEFAULT_PORT = 9464
DEFAULT_BIND = "127.0.0.1"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
INDEX = (b"Symphony's Prometheus exporter\n\n"
         b"/metrics  the figures (docs/metrics.md)\n/healthz  200 if Redis answered and the figures are fresh\n")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), format % args)


def _respond(start_response: Callable, status: str, body: bytes, content_type: str) -> Iterable[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


class Exporter:
    """Symphony's figures over HTTP: one engine, one cache, one collector, one server."""

    def __init__(self, engine: Engine, *, bind: str = DEFAULT_BIND, port: int = DEFAULT_PORT,
                 cache_s: float = CACHE_S, stale_after_s: float = STALE_S):
        self.engine = engine
        self.policy = PolicyNotice(logging.getLogger("symphony.exporter"), "the exporter")
        self.cache = ReadingCache(self._read, max_age_s=cache_s, stale_after_s=stale_after_s)
        self.collector = SymphonyCollector(self.cache)
        self.process = ProcessCollector(registry=None)
        server_class = _Server6 if _is_ipv6(bind) else _Server
        self.server = make_server(bind, port, self.app, server_class=server_class, handler_class=_QuietHandler)
        self._thread: threading.Thread | None = None

    def _read(self) -> Reading:
        """One read of Redis; its server facts say the eviction policy once per change (a failed
        read: it is said again once Redis answers, if it still evicts)."""
        reading = read_everything(self.engine)
        if reading.ok and reading.snapshot is not None:
            self.policy.observe(reading.snapshot.server)
        else:
            self.policy.lost()
        return reading

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def app(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            body = self.metrics(gzipped=gzipped)
            headers = [("Content-Type", TEXT_FORMAT), ("Content-Length", str(len(body)))]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        if path == "/healthz":
            ok, detail = self.cache.health()
            body = (json.dumps(detail) + "\n").encode()
            return _respond(start_response, "200 OK" if ok else "503 Service Unavailable", body, "application/json")
        if path == "/":
            return _respond(start_response, "200 OK", INDEX, "text/plain; charset=utf-8")
        return _respond(start_response, "404 Not Found", b"not found: try /metrics or /healthz\n",
                        "text/plain; charset=utf-8")

    def metrics(self, *, gzipped: bool = False) -> bytes:
        """What ``/metrics`` answers now."""
        return self.collector.render(self.cache.get(), extra=list(self.process.collect()), gzipped=gzipped)

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.5)

    def start(self) -> "Exporter":
        """Serve from a background thread (tests, or a process that does something else too)."""
        self._thread = threading.Thread(target=self.serve_forever, name="exporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _is_ipv6(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind).version == 6
    except ValueError:
        return False
