"""Records handed on to an Azure Storage queue (``symphony records forward --azure-queue NAME``)."""
from __future__ import annotations

import json
from typing import Any, Sequence

from symphony.engine import ConfigError, store_environment

from .credentials import azure_credentials


class AzureQueueSink:
    """Sends each record as one message (its JSON) to an Azure Storage queue, created if missing."""

    def __init__(self, name: str):
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        creds = azure_credentials(store_environment())
        self.name = name
        self.client = creds.queue_service(retry_total=3, connection_timeout=10).get_queue_client(name)
        try:
            self.client.create_queue()
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            raise ConfigError(f"cannot use the Azure queue {name!r} of storage account {creds.account_name()!r} "
                              f"({creds.how}): {str(exc).splitlines()[0]}") from None
        except Exception as exc:  # noqa: BLE001 - unreachable, no identity: one sentence
            raise ConfigError(f"cannot reach the Azure queue {name!r}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None

    def __str__(self) -> str:
        return f"Azure queue {self.name}"

    def delivered(self) -> str | None:
        return None  # a queue cannot be asked what it holds: pending records are sent again (at least once)

    def deliver(self, records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            self.client.send_message(json.dumps(record, separators=(",", ":")))

    def close(self) -> None:
        self.client.close()
