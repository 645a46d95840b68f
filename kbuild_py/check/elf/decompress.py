"""Decompressing module files (.ko.xz, .ko.zst, .ko.gz; told by magic bytes): the one capped
path for check, test --ko and the in-kernel dependencies put into a guest.

A hostile file (a 200 KB "bomb" that expands to gigabytes) costs CPU, never memory: the output
is first counted in 1 MiB chunks and only a stream that ends, whole, within MAX_DECOMPRESSED is
kept. A small module (nearly all of them) is kept from that first pass; a big one is
decompressed again into one anonymous mapping of exactly its size. Across the processes of
`check -r`, one big module is held at a time (share_between_processes), so memory does not grow
with the number of cores.
"""

from __future__ import annotations

import fcntl
import io
import mmap
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

from kbuild_py.errors import ModuleReadError

MAX_DECOMPRESSED = 256 * 1024 * 1024  # bounded memory for hostile archives
SMALL = 16 * 1024 * 1024  # kept from the first pass; bigger ones take the big-module lock
CHUNK = 1 << 20

_MAGIC = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))


def compression_of(head: bytes) -> str | None:
    """The compression a module file uses, told by its magic bytes (not its name)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def _fail(where: Path | str, reason: str) -> ModuleReadError:
    return ModuleReadError(
        f"{where}: {reason}", "pass a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz)"
    )


class _Truncated(Exception):
    pass


def _chunks(raw: bytes, kind: str) -> Iterator[bytes]:
    """The decompressed stream in chunks of at most CHUNK bytes; _Truncated if it stops early."""
    if kind == "xz":
        import lzma

        xz = lzma.LZMADecompressor()
        data = raw
        while not xz.eof:
            out = xz.decompress(data, max_length=CHUNK)
            data = b""
            if out:
                yield out
            elif xz.needs_input:
                raise _Truncated
    elif kind == "gzip":
        import zlib

        gz = zlib.decompressobj(wbits=31)
        data = raw
        while not gz.eof:
            out = gz.decompress(data, CHUNK)
            data = gz.unconsumed_tail
            if out:
                yield out
            elif not data:
                raise _Truncated
    else:
        import zstandard

        total = 0
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw))
        while chunk := reader.read(CHUNK):
            total += len(chunk)
            yield chunk
        # stream_reader stops quietly at a cut frame: a frame that declares its size must
        # have produced all of it
        size = zstandard.frame_content_size(raw)
        if size >= 0 and size != total:
            raise _Truncated


def decompress(raw: bytes, kind: str | None = None, where: Path | str = "module") -> bytes:
    """Plain bytes of a (maybe) compressed module: `raw` itself when it is not compressed;
    ModuleReadError when the data is corrupt, truncated or expands beyond MAX_DECOMPRESSED.
    A big module comes back as an anonymous mmap (bytes-like, read-only use)."""
    kind = kind or compression_of(raw[:6])
    if kind is None:
        return raw
    parts: list[bytes] | None = []
    total = 0
    try:
        for chunk in _chunks(raw, kind):
            total += len(chunk)
            if total > MAX_DECOMPRESSED:
                raise _fail(where, f"{kind} data expands beyond {MAX_DECOMPRESSED >> 20} MiB")
            if parts is not None:
                if total <= SMALL:
                    parts.append(chunk)
                else:
                    parts = None  # too big to keep twice: counted now, decompressed again below
        if parts is not None:
            return b"".join(parts)
        _big_enter()
        buf = mmap.mmap(-1, total)
        weakref.finalize(buf, _big_leave)
        pos = 0
        for chunk in _chunks(raw, kind):
            buf[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return buf  # type: ignore[return-value]
    except _Truncated:
        raise _fail(where, f"truncated {kind} data") from None
    except ModuleReadError:
        raise
    except Exception as err:  # lzma.LZMAError, zlib.error, zstandard.ZstdError, MemoryError
        raise _fail(where, f"corrupt {kind} data ({err})") from None


# --- one big module at a time across the processes of a `check -r` --------------------------

_lock_fd: int | None = None
_held = 0


def share_between_processes() -> None:
    """Before forking workers: big modules are then held by one process at a time (a POSIX
    record lock on an unlinked file, owned per process, so forked children exclude each other)."""
    global _lock_fd
    if _lock_fd is None:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="kmod-py-big-")
        os.unlink(path)
        _lock_fd = fd


def _big_enter() -> None:
    global _held
    if _lock_fd is not None and _held == 0:
        fcntl.lockf(_lock_fd, fcntl.LOCK_EX)
    _held += 1


def _big_leave() -> None:
    global _held
    _held -= 1
    if _lock_fd is not None and _held == 0:
        fcntl.lockf(_lock_fd, fcntl.LOCK_UN)
