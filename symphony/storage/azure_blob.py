"""Outputs in Azure Blob Storage: ``az://container/prefix/...``
(and ``abfs://container@account.dfs.core.windows.net/...``).

* **Atomic**: an upload is one Put Blob, or (above the single-put size) staged blocks committed by
  one Put Block List; a blob exists only once committed, and the blocks of an upload that died
  are never visible (Azure drops uncommitted blocks after a week). No temporary names.
* **One paged listing per directory**: ``list_prefix`` is one List Blobs walk under the prefix,
  5,000 names a page; never a request per item.
* **Verification**: the container exists, and the credentials can write there (a small probe
  blob is written and deleted), each failure in one sentence.

Upload sizes can be lowered for tests and slow links: ``SYMPHONY_STORAGE_BLOCK_BYTES`` (the
staged block size, and the largest single put).
"""
from __future__ import annotations

import html
import logging
import os
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from symphony.engine import ConfigError, store_environment

from .credentials import azure_credentials

PAGE = 5000
_NAME = re.compile(r"<Blob>\s*<Name>([^<]*)</Name>")
_NEXT = re.compile(r"<NextMarker>([^<]+)</NextMarker>")


class _FastPathUnavailable(Exception):
    """This SDK has no pipeline to send a raw request through: list with its own model."""
logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO


def split_url(url: str) -> tuple[str, str | None, str]:
    """(container, account or None, blob path) of an ``az://`` or ``abfs://`` URL."""
    scheme, _, rest = url.partition("://")
    head, _, path = rest.partition("/")
    container, _, host = head.partition("@")
    account = host.split(".", 1)[0] if host else None
    if not container:
        raise ConfigError(f"{url} names no container ({scheme}://CONTAINER/PATH)")
    return container, account, path.strip("/")


def _describe(exc: BaseException) -> str:
    """An Azure SDK error in one line (its error code, never a header or a secret)."""
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # the service's own code (AuthorizationFailure), not the enum's name
    message = str(getattr(exc, "message", "") or exc).strip().splitlines()
    text = message[0] if message else type(exc).__name__
    return f"{code}: {text}" if code and str(code) not in text else text


class AzureBlobStore:
    """The outputs of one container, through azure-storage-blob's synchronous client."""

    local = False

    def __init__(self, url: str):
        container, account, _ = split_url(url)
        env = store_environment()
        self.credentials = azure_credentials(env, account=account)
        block = int(env.get("SYMPHONY_STORAGE_BLOCK_BYTES") or 0)
        kwargs: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 120, "retry_total": 3}
        if block > 0:
            kwargs.update(max_block_size=block, max_single_put_size=block, min_large_block_upload_threshold=1)
        self.service = self.credentials.blob_service(env, **kwargs)
        self.container_name = container
        self.container = self.service.get_container_client(container)

    def __repr__(self) -> str:
        return f"AzureBlobStore({self.container_name} in {self.credentials.account_name()}, {self.credentials.how})"

    def _blob(self, path: str) -> str:
        container, _, blob = split_url(path)
        if container != self.container_name:
            raise ConfigError(f"{path} is not in container {self.container_name}")
        return blob

    def exists(self, path: str) -> bool:
        return self.container.get_blob_client(self._blob(path)).exists()

    def list_prefix(self, directory: str) -> list[str]:
        prefix = self._blob(directory)
        prefix = prefix + "/" if prefix else ""
        try:
            names = self._list_fast(prefix)
        except _FastPathUnavailable:
            names = self._list_sdk(prefix)
        start = len(prefix)
        return [n[start:] for n in names if "/" not in n[start:]]

    def _list_sdk(self, prefix: str) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        names: list[str] = []
        try:
            for page in self.container.list_blobs(name_starts_with=prefix, results_per_page=PAGE).by_page():
                names.extend(blob.name for blob in page)
        except ResourceNotFoundError:
            raise self._no_container() from None
        return names

    def _no_container(self) -> ConfigError:
        return ConfigError(f"the container {self.container_name!r} of storage account "
                           f"{self.credentials.account_name()!r} does not exist")

    def _list_fast(self, prefix: str) -> list[str]:
        """The same List Blobs pages, sent through the client's own pipeline (its credentials,
        retries and timeouts), with only the names taken from the XML: the SDK's model of every
        blob's properties costs about 7x the service's own time on a large listing
        (docs/benchmarks.md)."""
        try:
            from azure.core.exceptions import HttpResponseError
            from azure.core.rest import HttpRequest

            pipeline, version = self.container._pipeline, self.container.api_version
        except (ImportError, AttributeError):
            raise _FastPathUnavailable() from None
        base, _, sas = self.container.url.partition("?")
        names: list[str] = []
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list", "prefix": prefix, "maxresults": str(PAGE)}
            if marker:
                query["marker"] = marker
            url = base + "?" + urlencode(query) + (("&" + sas) if sas else "")
            response = pipeline.run(HttpRequest("GET", url, headers={"x-ms-version": version})).http_response
            if response.status_code == 404:
                raise self._no_container()
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            body = response.text()
            names.extend(html.unescape(n) if "&" in n else n for n in _NAME.findall(body))
            found = _NEXT.search(body)
            marker = html.unescape(found.group(1)) if found else ""
            if not marker:
                return names

    def put_atomic(self, source: str, path: str) -> None:
        with open(source, "rb") as fh:
            self.container.get_blob_client(self._blob(path)).upload_blob(fh, overwrite=True, max_concurrency=1)

    def get(self, path: str, destination: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self.container.get_blob_client(self._blob(path)).download_blob()
        except ResourceNotFoundError:
            raise FileNotFoundError(f"no blob {path}") from None
        with open(destination, "wb") as fh:
            downloader.readinto(fh)

    def delete(self, path: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.get_blob_client(self._blob(path)).delete_blob()
        except ResourceNotFoundError:
            pass

    def check_writable(self, root: str) -> str | None:
        from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                           ServiceRequestError)

        account = self.credentials.account_name()
        where = f"container {self.container_name!r} of storage account {account!r}"
        try:
            self.container.get_container_properties()
        except ResourceNotFoundError:
            return f"the {where} does not exist (create it, or fix the root {root})"
        except ClientAuthenticationError as exc:
            return f"storage account {account!r} refused the credentials ({self.credentials.how}): {_describe(exc)}"
        except ServiceRequestError as exc:
            return f"cannot reach storage account {account!r}: {_describe(exc)}"
        except HttpResponseError as exc:
            if exc.status_code == 403:
                return f"storage account {account!r} refused the credentials ({self.credentials.how}): {_describe(exc)}"
            return f"cannot read the {where}: {_describe(exc)}"
        except Exception as exc:  # noqa: BLE001 - e.g. no managed identity on this machine
            return f"cannot open the {where}: {type(exc).__name__}: {_describe(exc)}"
        prefix = self._blob(root)
        probe = (prefix + "/" if prefix else "") + f".symphony-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            client = self.container.get_blob_client(probe)
            client.upload_blob(b"", overwrite=True)
            client.delete_blob()
        except HttpResponseError as exc:
            return f"the credentials ({self.credentials.how}) cannot write to the {where}: {_describe(exc)}"
        return None


def open_azure(url: str) -> AzureBlobStore:
    return AzureBlobStore(url)
