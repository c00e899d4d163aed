"""Optional authenticated encryption of task data and job key/values, AES-256-GCM.

With a key configured (``SYMPHONY_KEY``, base64 or hex of 16/24/32 bytes, or a file named by
``SYMPHONY_KEY_FILE`` / ``--encryption-key-file``):

* a task message carries its item's metadata sealed in ``"e"`` instead of clear in ``"m"``;
  the routing fields (``i`` item, ``s`` session, ``t`` stage, ``a`` attempts) stay readable,
  because the Lua scripts dedup, route and count on them and operators ``LRANGE`` the queues.
  The token is made once, at enqueue, and carried unchanged from stage to stage, through
  retries and reclaims (the scripts compare messages byte for byte). It is bound to its session
  and item (associated data), so it cannot be moved to another item.
* a job's key/values (``ctx.kv``) are stored sealed, each bound to its job and field name.
* with ``encrypt_outputs: true`` in a session file, each stage's output is stored sealed (the
  token as the file's or blob's whole content), bound to its session, stage and item, and opened
  for the next stage in the worker's scratch folder; the handlers see clear files.

A token is ``v2.<key id>.<base64url(nonce | ciphertext | tag)>``; the key id (8 hex digits of
the key's SHA-256) tells a wrong key from tampered data in the error message, and is itself
authenticated (associated data, with the version), so changing it fails the task like any other
changed byte. Tokens made by earlier versions (``v1.``, whose key id was not bound) still open. A worker
with a key refuses task data that is not sealed; one without a key refuses sealed data; a
wrong key or a changed byte fails authentication. Each ends the task failed, with the reason,
and the handler never runs.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, SymphonyError
from .redaction import register_secret

KEY_VAR = "SYMPHONY_KEY"
KEY_FILE_VAR = "SYMPHONY_KEY_FILE"
VERSION = "v2"  # the key id is bound as associated data
LEGACY = "v1"  # earlier tokens: opened, never made
NONCE_BYTES = 12


class CryptoError(SymphonyError):
    """Sealed data could not be opened (wrong key, tampered, not sealed, or no key).
    ``this_process``: the cause is this process's key (another key, or none, or clear data where
    it requires sealed data), not the data: another process may open it."""

    def __init__(self, message: str, *, this_process: bool = False):
        super().__init__(message)
        self.this_process = this_process


def _parse_key(text: str | bytes, where: str) -> bytes:
    if isinstance(text, bytes):
        if len(text) in (16, 24, 32) and not text.strip().isascii():
            return text  # raw key bytes in a file
        text = text.decode("ascii", "replace")
    text = text.strip()
    for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True),
                   lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) in (16, 24, 32):
            return key
    raise ConfigError(f"the encryption key in {where} must be 16, 24 or 32 bytes, written in hex or base64 "
                      "(make one with: python -c \"import os,base64;print(base64.b64encode(os.urandom(32)).decode())\")")


def load_key(path: str | None = None, env: Mapping[str, str] | None = None) -> bytes | None:
    """The key from ``path``, else ``$SYMPHONY_KEY_FILE``, else ``$SYMPHONY_KEY``; None if none is set."""
    env = os.environ if env is None else env
    path = path or env.get(KEY_FILE_VAR) or None
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the encryption key file {path}: {exc.strerror or exc}") from None
        key = _parse_key(raw, f"the file {path}")
        register_secret(raw.decode("ascii", "replace").strip())
        return key
    text = env.get(KEY_VAR)
    if text:
        register_secret(text.strip())
        return _parse_key(text, f"${KEY_VAR}")
    return None


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"symphony-key-id" + key).hexdigest()[:8]


class Sealer:
    """AES-GCM with one key: ``seal`` / ``open`` bytes or JSON, bound to associated data."""

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) not in (16, 24, 32):
            raise ConfigError("an AES key must be 16, 24 or 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    def __repr__(self) -> str:
        return f"Sealer(key id {self.key_id})"

    def seal(self, data: bytes, aad: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, data, _bound(VERSION, self.key_id, aad))
        return f"{VERSION}.{self.key_id}.{base64.urlsafe_b64encode(blob).decode('ascii').rstrip('=')}"

    def open(self, token: Any, aad: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if not isinstance(token, str) or not token.startswith((VERSION + ".", LEGACY + ".")):
            raise CryptoError("the data is not encrypted, but this process has a key and accepts only encrypted data",
                              this_process=True)
        parts = token.split(".")
        if len(parts) != 3:
            raise CryptoError("the encrypted data is malformed (tampered?)")
        version, kid, body = parts
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, binascii.Error):
            raise CryptoError("the encrypted data is malformed (tampered?)") from None
        if len(blob) < NONCE_BYTES + 16:
            raise CryptoError("the encrypted data is truncated (tampered?)")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _bound(version, kid, aad))
        except InvalidTag:
            if kid != self.key_id:
                raise CryptoError(f"the data was encrypted with another key (key id {kid}; this process has "
                                  f"{self.key_id})", this_process=True) from None
            raise CryptoError("the encrypted data failed authentication: it was tampered with or belongs to "
                              "another item") from None

    def seal_json(self, value: Any, aad: str) -> str:
        return self.seal(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), aad)

    def open_json(self, token: Any, aad: str) -> Any:
        data = self.open(token, aad)
        try:
            return json.loads(data)
        except ValueError:
            raise CryptoError("the decrypted data is not JSON") from None


def _bound(version: str, kid: str, aad: str) -> bytes:
    """The associated data of a token: its version and key id with the caller's binding
    (a ``v1`` token bound only the caller's)."""
    if version == LEGACY:
        return aad.encode("utf-8")
    return f"{version}|{kid}|{aad}".encode("utf-8")


def task_aad(session: str, item: str) -> str:
    """What a task's sealed metadata is bound to (not the stage or attempt, which change)."""
    return f"symphony-task|{session}|{item}"


def output_aad(session: str, stage: str, item: str) -> str:
    """What a sealed output is bound to: its session, stage and item (a blob copied onto another
    item's or stage's name fails authentication)."""
    return f"symphony-output|{session}|{stage}|{item}"


def kv_aad(job_key: str, field: str) -> str:
    return f"symphony-kv|{job_key}|{field}"


def sealer_from(key: bytes | None) -> Sealer | None:
    return Sealer(key) if key else None
