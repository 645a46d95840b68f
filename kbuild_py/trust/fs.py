"""Writes and deletes that stay inside their own directory, whatever the disk holds.

A project directory, a cache or an image label is input kmod-py does not control: a cloned
repository can commit `.kmod-py -> /lib/modules`, a manifest can name `evil/../../x`, an image
label can say its release is `../../srv`. Everything kmod-py writes or deletes under a root goes
through here first:

- `plain_component`: a name from outside (kernel release, tag) is one plain path component;
- `real_dir` / `inside`: a directory kmod-py owns is a real directory (not a symlink) and a path
  below it stays below it (no `..`, no absolute part, no symlinked directory on the way);
- `remove_inside` / `rmtree_inside`: deletes that re-check containment, walking directory file
  descriptors with O_NOFOLLOW so a symlink swapped in meanwhile is not followed;
- `copy_file`: sparse files stay sparse, the destination is replaced (a hard link to it is not
  written through), a half-written copy is removed, an error names the destination;
- `write_replacing`: the same for generated text;
- `FileLock`: one holder at a time (flock), a second one waits with a message or, with
  --no-wait, fails at once naming the holder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.errors import InfraError, UsageError


class UnsafePathError(UsageError):
    """A path from outside would make kmod-py write or delete outside its own directory."""


class LockBusy(InfraError):
    """Another kmod-py process holds a lock and waiting was not allowed (--no-wait)."""


# --- names and containment -------------------------------------------------------------


def plain_component(name: str, what: str) -> str:
    """`name` if it can name one directory entry (no '/', '..', NUL or control characters)."""
    bad = (
        name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
        or len(name.encode("utf-8", "surrogateescape")) > 255
    )
    if bad:
        raise UnsafePathError(
            f"{what} {name!r} is not a plain name (one path component)",
            "a kernel release looks like 6.1.0-56-amd64; check where it came from "
            "(image label, include/generated/utsrelease.h, vermagic)",
        )
    return name


def real_dir(path: Path, what: str = "directory") -> Path:
    """`path` if it is a real directory or absent; a symlink (or a file) is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"{what} {path} is a symbolic link (to {os.readlink(path)}); kmod-py does not write "
            "through it",
            f"remove the link ({path}) and run again; kmod-py creates the directory itself",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} {path} exists and is not a directory", f"remove {path}")
    return path


def inside(root: Path, rel: str | os.PathLike[str], what: str = "path") -> Path:
    """root/rel, refused when rel is absolute, climbs with '..', or passes a symlinked
    directory (root itself included). The last component may be a symlink: it is the entry
    itself that callers replace or delete, never what it points to."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or "\0" in os.fspath(rel):
        raise UnsafePathError(
            f"{what} {os.fspath(rel)!r} leaves {root}",
            "only paths inside the directory are accepted; remove the file that named it",
        )
    real_dir(root)
    here = root
    for part in parts[:-1]:
        here = here / part
        real_dir(here, "directory")
    return root.joinpath(*parts)


def make_dirs(root: Path, rel: str | os.PathLike[str] = ".") -> Path:
    """mkdir -p root/rel, refusing symlinks on the way (root included)."""
    real_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    real_dir(root)
    here = root
    for part in Path(rel).parts:
        if part in ("", "."):
            continue
        if part == ".." or part.startswith("/"):
            raise UnsafePathError(f"directory {os.fspath(rel)!r} leaves {root}")
        here = here / part
        real_dir(here, "directory")
        try:
            os.mkdir(here)
        except FileExistsError:
            real_dir(here, "directory")
    return here


@contextmanager
def _dir_fd(root: Path, parts: tuple[str, ...]) -> Iterator[int]:
    """A file descriptor of root/parts..., opened one component at a time with O_NOFOLLOW."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for part in parts:
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def remove_inside(root: Path, rel: str | os.PathLike[str]) -> bool:
    """Unlink root/rel (a file or a symlink, never what a link points to). False if absent or
    not a file. A symlinked directory on the way is refused (UnsafePathError)."""
    path = inside(root, rel, "file to delete")
    parts = path.relative_to(root).parts
    try:
        with _dir_fd(root, parts[:-1]) as fd:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                return False
            os.unlink(parts[-1], dir_fd=fd)
            return True
    except FileNotFoundError:
        return False
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(
                f"{path}: a directory on the way is a symbolic link; not deleted"
            ) from None
        raise


def rmtree_inside(root: Path, rel: str | os.PathLike[str]) -> bool:
    """Delete the directory root/rel and what it holds (symlinks inside are removed, never
    followed). False if it does not exist."""
    import shutil

    path = inside(root, rel, "directory to delete")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return True
    shutil.rmtree(path)  # fd-based on Linux: does not follow symlinks below path
    return True


# --- copies and writes -----------------------------------------------------------------


def _fill(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy the data regions of src (SEEK_DATA/SEEK_HOLE); holes stay holes in dst."""
    pos = 0
    while pos < size:
        try:
            data = os.lseek(src_fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                break
            raise
        hole = os.lseek(src_fd, data, os.SEEK_HOLE)
        off = data
        while off < hole:
            n = os.copy_file_range(src_fd, dst_fd, hole - off, off, off)
            if n == 0:  # the kernel gave up early (cross-fs, special files): copy by hand
                _fill_plain(src_fd, dst_fd, hole, off)
                break
            off += n
        pos = hole
    os.ftruncate(dst_fd, size)


def _fill_plain(src_fd: int, dst_fd: int, size: int, off: int = 0) -> None:
    while off < size:
        chunk = os.pread(src_fd, min(1 << 20, size - off), off)
        if not chunk:
            raise OSError(errno.EIO, "the source file shrank while it was copied")
        view = memoryview(chunk)
        while view:
            n = os.pwrite(dst_fd, view, off)
            view, off = view[n:], off + n


@contextmanager
def _replacing(dst: Path) -> Iterator[int]:
    """The fd of a new file beside dst that replaces dst when the block ends (a hard link or
    symlink at dst is replaced, never written through). On any failure the half-made file is
    removed, and an OSError that names no file names dst (`dst: No space left on device`)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name[:40]}.", suffix=".part", dir=dst.parent)
    try:
        yield fd
        os.close(fd)
        fd = -1
        os.replace(tmp, dst)
    except BaseException as err:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.filename is None and err.errno != errno.ENOENT:
            raise OSError(err.errno, err.strerror, os.fspath(dst)) from None
        raise


def copy_file(src: Path, dst: Path) -> None:
    """Copy src to dst with its mode and times: holes stay holes, dst is replaced (never
    written through a hard link or a symlink), a half-made copy is removed, and a write error
    names dst (e.g. `dst: No space left on device`)."""
    with _replacing(dst) as fd, open(src, "rb") as s:
        st = os.fstat(s.fileno())
        try:
            _fill(s.fileno(), fd, st.st_size)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            _fill_plain(s.fileno(), fd, st.st_size)
            os.ftruncate(fd, st.st_size)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def write_replacing(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write path as a new file that replaces the old entry (a hard link elsewhere keeps its
    content); a failed write removes the partial file and names path."""
    raw = data.encode() if isinstance(data, str) else data
    with _replacing(path) as fd:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode & ~_umask())


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# --- names in JSON --------------------------------------------------------------------


def json_safe(obj: object) -> object:
    """obj with every string that holds undecodable file-name bytes (lone surrogates from
    surrogateescape) made valid: shown with \\xNN escapes, and, in a dict, the exact bytes next
    to it as `<key>_bytes` (base64) so nothing is lost."""
    if isinstance(obj, str):
        return _shown(obj) if _has_surrogates(obj) else obj
    if isinstance(obj, dict):
        out: dict[object, object] = {}
        for k, v in obj.items():
            if isinstance(v, str) and _has_surrogates(v):
                import base64

                out[k] = _shown(v)
                out[f"{k}_bytes"] = base64.b64encode(os.fsencode(v)).decode("ascii")
            else:
                out[k] = json_safe(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# --- locks -----------------------------------------------------------------------------


@dataclass
class LockPolicy:
    """How a busy lock is met: wait (saying so once through `say`) or fail at once."""

    wait: bool = True
    say: Callable[[str], None] | None = None


POLICY = LockPolicy()  # set once by a command (--no-wait, where messages go)


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


class FileLock:
    """An exclusive lock on a file (flock), held by one process (and thread) at a time.

    `doing` says what the holder does ("building /p for 6.1.0-57-amd64"); it is written into
    the file with the holder's pid so that a second process can say whom it waits for. The
    lock dies with its process: a killed kmod-py leaves nothing held.
    """

    def __init__(self, path: Path, doing: str) -> None:
        self.path = path
        self.doing = doing
        self._fd: int | None = None

    def holder(self) -> str:
        """'kmod-py (pid N) is <doing>' from the lock file, or a generic phrase."""
        try:
            pid, _, doing = self.path.read_text(errors="replace").partition("\n")
        except OSError:
            pid, doing = "", ""
        if pid.strip().isdigit():
            return f"kmod-py (pid {pid.strip()}) is {doing.strip() or self.doing}"
        return f"another kmod-py is {self.doing}"

    def acquire(self, policy: LockPolicy | None = None) -> None:
        policy = policy or POLICY
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = self.holder()
                if not policy.wait:
                    raise LockBusy(
                        f"busy: {who} (lock {self.path})",
                        "wait for it to finish, or run again without --no-wait to queue "
                        "behind it",
                    ) from None
                (policy.say or _stderr)(f"waiting: {who}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self.doing}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def locked(path: Path, doing: str, policy: LockPolicy | None = None) -> Iterator[None]:
    """Hold FileLock(path, doing) — also against other threads of this process."""
    key = os.fspath(path)
    with _thread_locks_guard:
        tl = _thread_locks.setdefault(key, threading.Lock())
    pol = policy or POLICY
    if not tl.acquire(blocking=False):
        if not pol.wait:
            raise LockBusy(f"busy: this kmod-py is already {doing}", "run it once")
        (pol.say or _stderr)(f"waiting: this kmod-py is already {doing}")
        tl.acquire()
    try:
        with _held(path, doing, pol):
            yield
    finally:
        tl.release()


@contextmanager
def _held(path: Path, doing: str, policy: LockPolicy) -> Iterator[None]:
    lock = FileLock(path, doing)
    lock.acquire(policy)
    try:
        yield
    finally:
        lock.release()
