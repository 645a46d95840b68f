"""A pure-Python initramfs writer: cpio "newc" (magic 070701), gzip optional.

The archive is a pure function of its entries: no external cpio, no reads of the
host's file metadata (owner, times, inode numbers are fixed), so the same inputs
give the same bytes. Parent directories are added automatically; /dev/console is
added as a character device so the kernel can hand init a console.
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

TRAILER = "TRAILER!!!"
MAGIC = b"070701"


@dataclass(frozen=True)
class Entry:
    """One archive member. `path` is relative to the archive root (no leading slash)."""

    path: str
    mode: int  # full st_mode, file type included
    data: bytes = b""  # file contents, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)  # major, minor for device nodes

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(_norm(path), stat.S_IFREG | perm, data)

    @staticmethod
    def directory(path: str, perm: int = 0o755) -> Entry:
        return Entry(_norm(path), stat.S_IFDIR | perm)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(_norm(path), stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return Entry(_norm(path), stat.S_IFCHR | perm, rdev=(major, minor))


def _norm(path: str) -> str:
    p = PurePosixPath("/" + path.lstrip("/"))
    if ".." in p.parts:
        raise ValueError(f"initramfs path escapes the root: {path}")
    return str(p).lstrip("/") or "."


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, entry: Entry, nlink: int) -> bytes:
    name = entry.path.encode() + b"\0"
    fields = (
        ino, entry.mode, 0, 0, nlink, 0, len(entry.data),
        0, 0, entry.rdev[0], entry.rdev[1], len(name), 0,
    )
    head = MAGIC + b"".join(b"%08X" % f for f in fields)
    return head + name + _pad4(len(head) + len(name))


def cpio_newc(entries: Iterable[Entry]) -> bytes:
    """The newc archive of `entries` (in order), with its trailer."""
    out = bytearray()
    for ino, entry in enumerate(entries, start=1):
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        out += _header(ino, entry, nlink)
        out += entry.data + _pad4(len(entry.data))
    out += _header(0, Entry(TRAILER, 0), 1)
    return bytes(out)


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Entries with every missing parent directory inserted before its first child."""
    seen: dict[str, bool] = {}  # path -> is a directory
    out: list[Entry] = []
    for entry in entries:
        parents = list(PurePosixPath(entry.path).parents)[::-1][1:]  # skip "."
        for parent in map(str, parents):
            if parent not in seen:
                seen[parent] = True
                out.append(Entry.directory(parent))
            elif not seen[parent]:
                raise ValueError(f"initramfs path {entry.path} is under the file {parent}")
        is_dir = stat.S_ISDIR(entry.mode)
        if entry.path in seen:
            if is_dir and seen[entry.path]:
                continue
            raise ValueError(f"duplicate initramfs path: {entry.path}")
        seen[entry.path] = is_dir
        out.append(entry)
    return out


def build(
    files: Mapping[str, bytes | Path],
    init: str,
    *,
    executables: Iterable[str] = (),
    symlinks: Mapping[str, str] | None = None,
    compress: bool = True,
) -> bytes:
    """An initramfs holding `files` (archive path -> bytes or host file), /init and /dev/console.

    Paths in `executables` get mode 0755; `symlinks` maps link path -> target.
    """
    execs = {_norm(p) for p in executables}
    entries = [
        Entry.directory("dev"),
        Entry.chardev("dev/console", 5, 1),
        Entry.file("init", init.encode(), 0o755),
    ]
    for path, content in sorted(files.items()):
        data = content.read_bytes() if isinstance(content, Path) else content
        entries.append(Entry.file(path, data, 0o755 if _norm(path) in execs else 0o644))
    for link, target in sorted((symlinks or {}).items()):
        entries.append(Entry.symlink(link, target))
    raw = cpio_newc(with_parents(entries))
    return gzip.compress(raw, compresslevel=1, mtime=0) if compress else raw


def write(path: Path, image: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image)
    return path
