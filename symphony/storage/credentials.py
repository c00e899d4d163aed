"""Azure Storage credentials, read as Azure's own tools read them, never printed.

In order: ``AZURE_STORAGE_CONNECTION_STRING`` (or a file named by
``AZURE_STORAGE_CONNECTION_STRING_FILE``); ``AZURE_STORAGE_ACCOUNT_NAME`` with
``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_SAS_TOKEN`` (each also as ``*_FILE``); the account name
alone (or in an ``abfs://container@account.dfs.core.windows.net`` URL) with
``DefaultAzureCredential`` (a VM's managed identity, a service principal from ``AZURE_CLIENT_*``,
the Azure CLI's login). Every secret read is registered for redaction; the worker drops these
variables from its environment before any handler runs (they are in the engine's
``SECRET_ENVIRONMENT``), and keeps them only in its own memory (:func:`store_environment`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from symphony.engine import ConfigError, register_secret, store_environment

VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_KEY",
             "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_BLOB_ENDPOINT", "AZURE_STORAGE_QUEUE_ENDPOINT")
NONE_FOUND = ("no Azure Storage credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME "
              "with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or AZURE_STORAGE_ACCOUNT_NAME alone for a "
              "managed identity); each may also be read from a file named by the same variable with _FILE")


@dataclass(frozen=True)
class AzureCredentials:
    connection_string: str | None = field(default=None, repr=False)
    account: str | None = None
    key: str | None = field(default=None, repr=False)
    sas: str | None = field(default=None, repr=False)
    blob_endpoint: str | None = None
    queue_endpoint: str | None = None

    @property
    def how(self) -> str:
        """Which kind of credential, in words (never the secret)."""
        if self.connection_string:
            return "a connection string"
        if self.key:
            return "an account key"
        if self.sas:
            return "a SAS token"
        return "DefaultAzureCredential"

    def account_name(self) -> str:
        if self.account:
            return self.account
        for part in (self.connection_string or "").split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() == "accountname":
                return value.strip()
        return "?"

    def _token_credential(self, env: Mapping[str, str]) -> Any:
        if env.get("AZURE_CLIENT_SECRET") and env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID"):
            from azure.identity import ClientSecretCredential

            register_secret(env["AZURE_CLIENT_SECRET"])
            return ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"])
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ConfigError(f"{NONE_FOUND}; for a managed identity install azure-identity") from None
        return DefaultAzureCredential(exclude_interactive_browser_credential=True)

    def blob_service(self, env: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        from azure.storage.blob import BlobServiceClient

        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **kwargs)
        url = self.blob_endpoint or f"https://{self.account}.blob.core.windows.net"
        credential = self.key and {"account_name": self.account, "account_key": self.key}
        credential = credential or self.sas or self._token_credential(env or store_environment())
        return BlobServiceClient(url, credential=credential, **kwargs)

    def queue_service(self, env: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        from azure.storage.queue import QueueServiceClient

        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **kwargs)
        url = self.queue_endpoint or f"https://{self.account}.queue.core.windows.net"
        credential = self.key and {"account_name": self.account, "account_key": self.key}
        credential = credential or self.sas or self._token_credential(env or store_environment())
        return QueueServiceClient(url, credential=credential, **kwargs)


def _read(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    path = env.get(name + "_FILE")
    if not value and path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {name} from the file {path} (${name}_FILE): "
                              f"{exc.strerror or exc}") from None
    return value.strip() if value else None


def azure_credentials(env: Mapping[str, str] | None = None, account: str | None = None) -> AzureCredentials:
    """The credentials ``env`` (the process's stored environment by default) gives; ConfigError
    in one sentence when there are none."""
    env = store_environment() if env is None else env
    connection = _read(env, "AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        register_secret(connection)
        for part in connection.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                register_secret(value.strip())
        return AzureCredentials(connection_string=connection)
    name = account or _read(env, "AZURE_STORAGE_ACCOUNT_NAME")
    key, sas = _read(env, "AZURE_STORAGE_KEY"), _read(env, "AZURE_STORAGE_SAS_TOKEN")
    register_secret(key)
    register_secret(sas)
    if not name:
        raise ConfigError(NONE_FOUND)
    return AzureCredentials(account=name, key=key, sas=sas, blob_endpoint=env.get("AZURE_STORAGE_BLOB_ENDPOINT"),
                            queue_endpoint=env.get("AZURE_STORAGE_QUEUE_ENDPOINT"))
