"""Framed JSON messages between a worker process and its handler executor, over two pipes.

Each message is a JSON object after a 4-byte big-endian length. JSON, never pickle: the executor
runs handler code, and nothing a handler sends down its pipe may make the worker process run
code (the worker holds the Redis connection and the secrets). A frame that is too long or not a
JSON object is a :class:`ProtocolError`; the worker then kills the executor.

This module imports nothing of the engine: the executor must start fast and hold no secrets.
"""
from __future__ import annotations

import json
import os
import select
import struct
import threading
import time
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
READ_CHUNK = 256 * 1024


class ChannelClosed(Exception):
    """The other side closed its end (it exited or was killed)."""


class ProtocolError(Exception):
    """The other side sent something that is not a frame of this protocol."""


class Channel:
    """One end: reads frames from ``read_fd``, writes frames to ``write_fd``.

    Sends may come from several threads (a lock keeps frames whole); reads come from one
    thread at a time. :meth:`poll` waits for a frame up to a timeout, with ``select`` on POSIX
    and a reader thread where pipes cannot be selected (Windows)."""

    def __init__(self, read_fd: int, write_fd: int, *, reader_thread: bool | None = None):
        self.read_fd, self.write_fd = read_fd, write_fd
        self._buffer = bytearray()
        self._send_lock = threading.Lock()
        self._closed = False
        self._ended = False  # the other side's end of stream was read (frames before it may still be buffered)
        self._reader: _ReaderThread | None = None
        if reader_thread if reader_thread is not None else os.name == "nt":
            self._reader = _ReaderThread(read_fd)

    # --- writing --------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message, separators=(",", ":"), default=str).encode("utf-8"))

    def send_raw(self, data: bytes) -> None:
        """Send ``data``, the encoding of a JSON object (the caller vouches for it)."""
        frame = HEADER.pack(len(data)) + data
        with self._send_lock:
            view = memoryview(frame)
            while view:
                try:
                    written = os.write(self.write_fd, view)
                except (BrokenPipeError, OSError) as exc:
                    raise ChannelClosed(str(exc)) from None
                view = view[written:]

    # --- reading --------------------------------------------------------------------------------
    def _take(self) -> dict[str, Any] | None:
        """A whole frame from the buffer, if one is there."""
        if len(self._buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise ProtocolError(f"a frame of {size} bytes (at most {MAX_FRAME})")
        end = HEADER.size + size
        if len(self._buffer) < end:
            return None
        data = bytes(self._buffer[HEADER.size:end])
        del self._buffer[:end]
        try:
            message = json.loads(data)
        except Exception as exc:  # noqa: BLE001 - whatever the bytes were, they are not ours
            raise ProtocolError(f"a frame that is not JSON ({type(exc).__name__})") from None
        if not isinstance(message, dict):
            raise ProtocolError("a frame that is not a JSON object")
        return message

    def _fill(self) -> None:
        """Read what is there (blocking until something is); ChannelClosed at the end."""
        if self._ended:
            raise ChannelClosed("end of stream")
        chunk = self._reader.read() if self._reader is not None else _read(self.read_fd)
        if not chunk:
            self._ended = True
            raise ChannelClosed("end of stream")
        self._buffer += chunk

    def drain(self, max_reads: int = 8) -> bool:
        """Read what the pipe holds now, without blocking (at most ``max_reads`` reads of
        :data:`READ_CHUNK`); True if that bound stopped it (more may be waiting). The frames are
        then taken with :meth:`take`; after the last one, :meth:`take` raises ChannelClosed if the
        other side's end of stream was read."""
        for _ in range(max_reads):
            if self._ended or not self._readable(0):
                return False
            try:
                self._fill()
            except ChannelClosed:
                return False
        return True

    def take(self) -> dict[str, Any] | None:
        """A whole frame already read, or None (no system call); ChannelClosed once the frames
        read before the other side's end of stream are taken."""
        message = self._take()
        if message is None and self._ended:
            raise ChannelClosed("end of stream")
        return message

    def has_frame(self) -> bool:
        """A whole frame is already read and waiting (taking it needs no system call)."""
        if len(self._buffer) < HEADER.size:
            return False
        return len(self._buffer) >= HEADER.size + HEADER.unpack_from(self._buffer)[0]

    def _readable(self, timeout: float) -> bool:
        if self._reader is not None:
            return self._reader.ready(max(0.0, timeout))
        ready, _, _ = select.select([self.read_fd], [], [], max(0.0, timeout))
        return bool(ready)

    def recv(self) -> dict[str, Any]:
        """The next frame (blocking)."""
        while True:
            message = self._take()
            if message is not None:
                return message
            self._fill()

    def poll(self, timeout: float) -> dict[str, Any] | None:
        """The next frame if a whole one arrives within ``timeout`` seconds, else None. Never
        blocks past the timeout, even on a frame that arrives only in part."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._take()
            if message is not None:
                return message
            if not self._readable(deadline - time.monotonic()):
                return None
            self._fill()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_CHUNK)
    except OSError:
        return b""


class _ReaderThread:
    """Reads a pipe in a thread, for platforms whose pipes cannot be waited on with select."""

    def __init__(self, fd: int):
        self._fd = fd
        self._chunks: list[bytes] = []
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._run, name="channel-reader", daemon=True).start()

    def _run(self) -> None:
        while True:
            chunk = _read(self._fd)
            with self._cond:
                if chunk:
                    self._chunks.append(chunk)
                else:
                    self._eof = True
                self._cond.notify_all()
            if not chunk:
                return

    def ready(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._chunks or self._eof, timeout)

    def read(self) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._chunks or self._eof)
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                return data
            return b""
