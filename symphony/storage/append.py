"""Lines appended to Azure append blobs, one blob per day: ``az://container/prefix`` names
``prefix/YYYY-MM-DD.jsonl`` (or ``.csv``). What the Azure Monitor collector's file sinks write
when ``--jsonl`` / ``--csv`` is a URL: VM metrics kept in Blob Storage for
analysis. Each append is one Append Block (at most 4 MiB, split above that)."""
from __future__ import annotations

from datetime import datetime, timezone

from symphony.engine import store_environment

from .azure_blob import split_url
from .credentials import azure_credentials

BLOCK = 4 * 1024 * 1024


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


class DailyAppendBlobs:
    def __init__(self, url: str, suffix: str):
        self.container_name, account, prefix = split_url(url)
        self.prefix, self.suffix = prefix, suffix
        service = azure_credentials(store_environment(), account=account).blob_service(
            store_environment(), retry_total=3, connection_timeout=10)
        self.container = service.get_container_client(self.container_name)

    def name(self, day: str) -> str:
        return f"{self.prefix}/{day}{self.suffix}" if self.prefix else f"{day}{self.suffix}"

    def days(self) -> list[str]:
        """The days that have a blob, oldest first."""
        start = f"{self.prefix}/" if self.prefix else ""
        names = [b.name[len(start):] for b in self.container.list_blobs(name_starts_with=start)]
        return sorted(n[:-len(self.suffix)] for n in names if n.endswith(self.suffix) and "/" not in n)

    def size(self, day: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return int(self.container.get_blob_client(self.name(day)).get_blob_properties().size)
        except ResourceNotFoundError:
            return 0

    def tail(self, nbytes: int) -> tuple[str, bool]:
        """The last ``nbytes`` of the newest day's blob, and whether that is all of it."""
        days = self.days()
        if not days:
            return "", True
        client = self.container.get_blob_client(self.name(days[-1]))
        size = int(client.get_blob_properties().size)
        start = max(0, size - nbytes)
        if size == 0:
            return "", True
        data = client.download_blob(offset=start, length=size - start).readall()
        return data.decode("utf-8", "replace"), start == 0

    def append(self, day: str, text: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        client = self.container.get_blob_client(self.name(day))
        try:
            client.create_append_blob(if_none_match="*")
        except ResourceExistsError:
            pass
        data = text.encode("utf-8")
        for start in range(0, len(data), BLOCK):
            client.append_block(data[start:start + BLOCK])
