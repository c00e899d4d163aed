"""Outputs on any filesystem fsspec knows (``s3://`` with s3fs, ``gs://`` with gcsfs, ``abfs://``
with adlfs, ``memory://``): the same interface as the Azure store, through fsspec's calls.

Atomicity is the object store's own: a single PUT or a multipart upload appears whole when it
completes (S3, GCS, Azure). Listing is fsspec's ``ls`` of the directory (paged by the backend).
"""
from __future__ import annotations

from typing import Any

from symphony.engine import ConfigError, store_environment


class FsspecStore:
    local = False

    def __init__(self, url: str):
        try:
            import fsspec
        except ImportError:
            raise ConfigError("outputs at object-store URLs need the storage extra "
                              "(pip install 'redis-symphony[storage]')") from None
        protocol = url.split("://", 1)[0]
        options: dict[str, Any] = {}
        if protocol in ("abfs", "az", "abfss"):
            from .credentials import azure_credentials

            creds = azure_credentials(store_environment())
            options = ({"connection_string": creds.connection_string} if creds.connection_string else
                       {"account_name": creds.account, "account_key": creds.key, "sas_token": creds.sas})
        try:
            self.fs = fsspec.filesystem(protocol, **{k: v for k, v in options.items() if v})
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"no filesystem for {protocol}:// ({exc})") from None
        self.protocol = protocol

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def list_prefix(self, directory: str) -> list[str]:
        try:
            entries = self.fs.ls(directory, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") != "directory"]

    def put_atomic(self, source: str, path: str) -> None:
        self.fs.put_file(source, path)

    def get(self, path: str, destination: str) -> None:
        self.fs.get_file(path, destination)

    def delete(self, path: str) -> None:
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            pass

    def check_writable(self, root: str) -> str | None:
        import uuid

        probe = root.rstrip("/") + f"/.symphony-probe-{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open(probe, "wb") as fh:
                fh.write(b"")
            self.fs.rm(probe)
        except Exception as exc:  # noqa: BLE001 - one sentence whatever the backend raised
            return f"cannot write under {root}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None


def open_fsspec(url: str) -> FsspecStore:
    return FsspecStore(url)
