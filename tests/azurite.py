"""Azurite (the Azure Storage emulator) for the storage tests: a real Blob and Queue service on
free local ports, in a temporary folder, stopped by its PID.

Where the binary comes from: ``$AZURITE`` (a path), else ``.ci/node/node_modules/.bin/azurite``
(what ``.ci/run`` installs with npm), else ``azurite`` on the PATH. Without any of them (or
without node) the tests that need it skip, saying why.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
# Azurite's documented, well-known development key (not a secret: every Azurite has it)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary() -> str | None:
    for candidate in (os.environ.get("AZURITE"), str(ROOT / ".ci" / "node" / "node_modules" / ".bin" / "azurite"),
                      shutil.which("azurite")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def why_unavailable() -> str | None:
    """One line saying why Azurite cannot run here, or None."""
    if azurite_binary() is None:
        return ("Azurite is not installed (npm install --prefix .ci/node azurite, as .ci/run does, "
                "or set $AZURITE)")
    if shutil.which("node") is None:
        return "Azurite needs node, which is not on the PATH"
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError:
        return "the storage extra is not installed (pip install -e '.[storage]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Azurite:
    """One Azurite process: ``start()``, then ``connection_string``; ``close()`` stops it by PID."""

    def __init__(self, directory: Path, in_memory: bool = False):
        self.directory = directory
        self.in_memory = in_memory  # no persistence to disk (the benchmark's large containers)
        self.blob_port, self.queue_port, self.table_port = _free_port(), _free_port(), _free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "azurite.log"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};")

    def start(self, timeout: float = 60.0) -> None:
        binary = azurite_binary()
        assert binary, why_unavailable()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary, "--silent", *([] if self.in_memory else ["--location", str(self.directory / "data")]),
             "--blobPort", str(self.blob_port),
             "--queuePort", str(self.queue_port), "--tablePort", str(self.table_port), "--skipApiVersionCheck",
             "--loose", "--disableTelemetry", *(["--inMemoryPersistence"] if self.in_memory else [])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(self.directory))
        log.close()
        deadline = time.monotonic() + timeout
        while not (_listening(self.blob_port) and _listening(self.queue_port)):
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Azurite did not listen within {timeout}s")
            time.sleep(0.1)

    def container(self, name: str, empty: bool = True):
        """A fresh container ``name`` (created; emptied if it was there, unless ``empty`` is False)."""
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string)
        client = service.get_container_client(name)
        if client.exists():
            if not empty:
                return client
            for blob in client.list_blobs():
                client.delete_blob(blob.name)
        else:
            client.create_container()
        return client

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
        self.process = None
