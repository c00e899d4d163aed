"""Where stage outputs live: the one small interface the engine and the workers reach them through.

An output is named by a string: a local path (``/data/block7/rvm/row-001.json``) or an object-store
URL (``az://scans/data/block7/rvm/row-001.json``). :func:`open_store` gives the
:class:`OutputStore` for it:

* a local path: :class:`LocalStore`, today's code (``os.path.exists``, one ``os.listdir`` per
  directory, a temporary name renamed into place with ``os.replace``), so local outputs keep
  exactly their behaviour and speed;
* a URL: the store registered for its scheme by an installed extra, through the entry-point group
  ``symphony.stores`` (the ``storage`` extra registers ``az`` and ``abfs``, and a generic fsspec
  store for any other scheme fsspec knows). The engine never imports those stores: they depend
  on it, never the reverse.

Every store answers the same five questions, and the sixth that verification asks:
``exists``, ``list_prefix`` (the names directly under a directory: one paged listing, never a
request per item), ``put_atomic`` (the output exists only once complete), ``get`` (into a local
file), ``delete``, and ``check_writable`` (one sentence saying why outputs cannot be written
there, or None).
"""
from __future__ import annotations

import os
import threading
import uuid
from typing import Callable, Mapping, Protocol, runtime_checkable

from symphony.spec import is_url, root_not_writable, url_scheme

from .errors import ConfigError

ENTRY_POINTS = "symphony.stores"


@runtime_checkable
class OutputStore(Protocol):
    """What the engine and the workers need of a place where outputs live."""

    local: bool  # True: outputs are files on this machine, handlers read and write them in place

    def exists(self, path: str) -> bool: ...

    def list_prefix(self, directory: str) -> list[str]:
        """The names directly under ``directory`` (not its full paths); none if it does not exist."""
        ...

    def put_atomic(self, source: str, path: str) -> None:
        """Make the local file ``source`` the output ``path``: it exists only once complete."""
        ...

    def get(self, path: str, destination: str) -> None:
        """Copy the output ``path`` into the local file ``destination`` (FileNotFoundError if none)."""
        ...

    def delete(self, path: str) -> None: ...

    def check_writable(self, root: str) -> str | None:
        """Why outputs cannot be written under ``root`` (one sentence), or None."""
        ...


class LocalStore:
    """Outputs on this machine's filesystem (a local disk or a mounted share)."""

    local = True

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list_prefix(self, directory: str) -> list[str]:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []

    def put_atomic(self, source: str, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temp = f"{path}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with open(source, "rb") as src, open(temp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(temp, path)
        except BaseException:
            try:
                os.remove(temp)
            except OSError:
                pass
            raise

    def get(self, path: str, destination: str) -> None:
        with open(path, "rb") as src, open(destination, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    def delete(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def check_writable(self, root: str) -> str | None:
        return root_not_writable(root)


# The variables object stores read their credentials from. A worker captures them once, before it
# drops the secret ones from its environment (no handler ever sees them), and its stores read the
# captured copy; everywhere else they are read from the environment.
STORE_VARIABLES = ("AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST",
                   "AZURE_FEDERATED_TOKEN_FILE", "SYMPHONY_STORAGE_")
_environment: dict[str, str] | None = None


def store_variables(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The store variables of ``env`` (the environment by default)."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k.startswith(STORE_VARIABLES)}


def capture_store_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keep (in this process's memory) the store variables of ``env`` (the environment by
    default), for the stores opened from now on; returns them."""
    global _environment
    _environment = store_variables(env)
    forget_stores()
    return dict(_environment)


def store_environment() -> Mapping[str, str]:
    """Where stores read their credentials: the captured variables, else the environment."""
    return os.environ if _environment is None else _environment


LOCAL = LocalStore()
_opened: dict[str, OutputStore] = {}
_lock = threading.Lock()
_openers: dict[str, Callable[[str], OutputStore]] = {}


def register_store(scheme: str, opener: Callable[[str], OutputStore]) -> None:
    """Serve URLs of ``scheme`` with ``opener(url)`` (the entry points do this; so can a test)."""
    _openers[scheme.lower()] = opener
    with _lock:
        for key in [k for k in _opened if url_scheme(k) == scheme.lower()]:
            del _opened[key]


def _opener(scheme: str) -> Callable[[str], OutputStore] | None:
    if scheme in _openers:
        return _openers[scheme]
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}
    ep = found.get(scheme) or found.get("*")  # "*": a generic store (fsspec) for every other scheme
    if ep is None:
        return None
    _openers[scheme] = ep.load()
    return _openers[scheme]


def store_key(path: str) -> str:
    """What one store serves: ``scheme://container`` (its first path segment) for a URL."""
    scheme = url_scheme(path)
    if scheme is None:
        return ""
    rest = path.split("://", 1)[1]
    return f"{scheme}://{rest.split('/', 1)[0]}"


def open_store(path: str | None) -> OutputStore:
    """The store of ``path`` (a local path or a URL); :class:`ConfigError` in one sentence when no
    installed extra serves its scheme or its credentials are missing. Stores are opened once per
    scheme and container, and shared by the process's threads."""
    if not is_url(path):
        return LOCAL
    assert path is not None
    key = store_key(path)
    store = _opened.get(key)
    if store is not None:
        return store
    scheme = url_scheme(path) or ""
    opener = _opener(scheme)
    if opener is None:
        raise ConfigError(f"outputs at {scheme}:// need the storage extra (pip install 'redis-symphony[storage]'); "
                          f"no installed store serves {scheme}://")
    with _lock:
        store = _opened.get(key)
        if store is None:
            store = _opened[key] = opener(path)
    return store


def forget_stores() -> None:
    """Drop the opened stores (after a fork, or when credentials changed)."""
    with _lock:
        _opened.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _opened.clear())
