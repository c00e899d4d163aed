"""Staging a task through a scratch folder, for outputs that are not plain local files.

When a stage's output (or its input) lives in an object store, or the session seals its outputs
at rest (``encrypt_outputs``), handlers still get local paths: before the task runs, its input
is fetched into a scratch folder of its own (and opened, when sealed); the handler writes its
output there; on success the output is sealed (when asked) and handed to the store in one atomic
step (``OutputStore.put_atomic``: a blob exists only once its upload committed). The folder is
removed whatever the outcome. ``--scratch-limit`` bounds what one task may stage; the bytes
staged are counted for the worker's summary.

Plain local outputs never come here: they keep the temporary name renamed into place
(:mod:`symphony.workers.runner`).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

from symphony.engine import ConfigError, CryptoError, OutputStore, Sealer, is_url, open_store, output_aad, redact

log = logging.getLogger("symphony.worker")


class StageError(Exception):
    """Why a task could not be staged in or out (its message is the task's error)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "))


class Staging:
    def __init__(self, scratch_dir: str | None, limit_bytes: int, sealer: Sealer | None):
        self.root = scratch_dir or os.path.join(tempfile.gettempdir(), "symphony-scratch")
        self.limit = limit_bytes
        self.sealer = sealer
        self.bytes_in = self.bytes_out = 0

    @staticmethod
    def needed(final: str | None, input_path: str | None, seal: bool) -> bool:
        return seal or is_url(final) or is_url(input_path)

    def store(self, path: str) -> OutputStore:
        try:
            return open_store(path)
        except ConfigError as exc:
            raise StageError(str(exc)) from None

    def _sealer(self) -> Sealer:
        if self.sealer is None:
            raise StageError("the session's outputs are encrypted (encrypt_outputs), and this worker has no key "
                             "(SYMPHONY_KEY_FILE / SYMPHONY_KEY)")
        return self.sealer

    def _check_size(self, path: str, what: str) -> int:
        size = os.path.getsize(path)
        if self.limit and size > self.limit:
            raise StageError(f"the {what} is {size:,} bytes, over this worker's scratch limit of "
                             f"{self.limit:,} bytes (--scratch-limit)")
        return size

    def begin(self) -> str:
        os.makedirs(self.root, exist_ok=True)
        return tempfile.mkdtemp(prefix="task-", dir=self.root)

    def fetch(self, scratch: str, path: str, sealed_as: tuple[str, str, str] | None) -> str:
        """The input ``path`` as a local file in ``scratch`` (opened if ``sealed_as`` (session,
        stage, item) says it is a sealed output)."""
        local = os.path.join(scratch, "in", os.path.basename(path.rstrip("/")) or "input")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        if is_url(path) or sealed_as:
            try:
                self.store(path).get(path, local)
            except FileNotFoundError:
                raise StageError(f"the input {path} does not exist") from None
            except StageError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store's own errors, in one line
                raise StageError(f"cannot fetch the input {path}: {_describe(exc)}") from None
            self.bytes_in += self._check_size(local, f"input {path}")
        if sealed_as:
            with open(local, "rb") as fh:
                token = fh.read().decode("ascii", "replace").strip()
            try:
                clear = self._sealer().open(token, output_aad(*sealed_as))
            except CryptoError as exc:
                raise StageError(f"the input {path} cannot be opened: {exc}") from None
            with open(local, "wb") as fh:
                fh.write(clear)
        return local

    def output(self, scratch: str, final: str) -> str:
        directory = os.path.join(scratch, "out")
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, os.path.basename(final.rstrip("/")) or "output")

    def commit(self, temp: str, final: str, sealed_as: tuple[str, str, str] | None) -> None:
        """Hand the handler's output ``temp`` to the store as ``final`` (sealed first if asked)."""
        if not os.path.exists(temp):
            raise StageError(f"the handler succeeded but wrote no output (expected {final})")
        source = temp
        if sealed_as:
            with open(temp, "rb") as fh:
                token = self._sealer().seal(fh.read(), output_aad(*sealed_as))
            source = temp + ".sealed"
            with open(source, "wb") as fh:
                fh.write(token.encode("ascii"))
        size = self._check_size(source, f"output {final}")
        try:
            self.store(final).put_atomic(source, final)
        except StageError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store's own errors, in one line
            raise StageError(f"cannot store the output {final}: {_describe(exc)}") from None
        self.bytes_out += size
        log.debug("stored %s (%d bytes)", final, size)

    @staticmethod
    def release(scratch: str | None) -> None:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
