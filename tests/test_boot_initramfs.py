"""The cpio newc writer, read back by an independent parser written from the format spec."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbuild_py.boot import initramfs
from kbuild_py.boot.initramfs import Entry, cpio_newc, with_parents

FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
          "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")


def read_newc(data: bytes) -> list[dict]:
    """Parse a newc archive the way the kernel's init/initramfs.c does."""
    out, pos = [], 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        hdr = {f: int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i, f in enumerate(FIELDS)}
        pos += 110
        name = data[pos:pos + hdr["namesize"]]
        assert name.endswith(b"\0")
        hdr["name"] = name[:-1].decode()
        pos = (pos + hdr["namesize"] + 3) & ~3
        hdr["data"] = data[pos:pos + hdr["filesize"]]
        pos = (pos + hdr["filesize"] + 3) & ~3
        if hdr["name"] == "TRAILER!!!":
            assert pos == len(data)
            return out
        out.append(hdr)


def test_entries_round_trip_with_modes_and_alignment() -> None:
    arc = cpio_newc([
        Entry.directory("bin"),
        Entry.file("bin/busybox", b"\x7fELF" + b"x" * 5, 0o755),
        Entry.symlink("bin/sh", "busybox"),
        Entry.chardev("dev/console", 5, 1),
    ])
    assert len(arc) % 4 == 0
    got = {e["name"]: e for e in read_newc(arc)}
    assert list(got) == ["bin", "bin/busybox", "bin/sh", "dev/console"]
    assert stat.S_ISDIR(got["bin"]["mode"]) and got["bin"]["nlink"] == 2
    assert got["bin/busybox"]["mode"] == stat.S_IFREG | 0o755
    assert got["bin/busybox"]["data"] == b"\x7fELFxxxxx"
    assert stat.S_ISLNK(got["bin/sh"]["mode"]) and got["bin/sh"]["data"] == b"busybox"
    assert stat.S_ISCHR(got["dev/console"]["mode"])
    assert (got["dev/console"]["rdevmajor"], got["dev/console"]["rdevminor"]) == (5, 1)
    assert len({e["ino"] for e in got.values()}) == 4


def test_build_adds_init_console_and_parents_and_is_deterministic(tmp_path: Path) -> None:
    host_file = tmp_path / "m.ko"
    host_file.write_bytes(b"module")
    files = {"lib/kmod-py/test/m.ko": host_file, "bin/busybox": b"bb"}
    image = initramfs.build(files, "#!/bin/sh\n", executables=["bin/busybox"],
                            symlinks={"bin/sh": "busybox"})
    assert image == initramfs.build(files, "#!/bin/sh\n", executables=["bin/busybox"],
                                    symlinks={"bin/sh": "busybox"})
    got = {e["name"]: e for e in read_newc(gzip.decompress(image))}
    assert got["init"]["data"] == b"#!/bin/sh\n" and got["init"]["mode"] & 0o777 == 0o755
    assert stat.S_ISCHR(got["dev/console"]["mode"])
    for parent in ("lib", "lib/kmod-py", "lib/kmod-py/test"):
        assert stat.S_ISDIR(got[parent]["mode"])
    names = list(got)
    assert names.index("lib/kmod-py/test") < names.index("lib/kmod-py/test/m.ko")
    assert got["lib/kmod-py/test/m.ko"]["data"] == b"module"
    assert got["bin/busybox"]["mode"] & 0o777 == 0o755
    assert got["lib/kmod-py/test/m.ko"]["mode"] & 0o777 == 0o644
    raw = initramfs.build(files, "#!/bin/sh\n", compress=False)
    assert raw.startswith(b"070701")


def test_bad_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="escapes"):
        Entry.file("../etc/passwd", b"")
    with pytest.raises(ValueError, match="duplicate"):
        with_parents([Entry.file("a", b"1"), Entry.file("/a", b"2")])


_names = st.lists(
    st.text("abcxyz_.-0123456789", min_size=1, max_size=12).filter(lambda s: s not in (".", "..")),
    min_size=1, max_size=3,
).map("/".join)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_names, st.binary(max_size=300), min_size=1, max_size=8))
def test_any_file_set_round_trips(files: dict[str, bytes]) -> None:
    # a path that is also another path's parent directory cannot be a file
    clash = any(other.startswith(p + "/") for p in files for other in files)
    if clash:
        with pytest.raises(ValueError):
            initramfs.build(files, "x", compress=False)
        return
    got = {e["name"]: e for e in read_newc(initramfs.build(files, "x", compress=False))}
    for path, data in files.items():
        assert got[path]["data"] == data
        assert stat.S_ISREG(got[path]["mode"])
