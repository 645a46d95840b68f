"""No code from caches: the check-target cache is parsed data, never pickle; the cache
directory is private (0700) and refused when someone else could write to it."""

from __future__ import annotations

import os
import pickle
import re
import stat
import struct
from pathlib import Path

import pytest
from conftest import require
from typer.testing import CliRunner

from kbuild_py.check.target import decode_tables, encode_tables
from kbuild_py.cli import app
from kbuild_py.errors import UsageError
from kbuild_py.paths import cache_dir

runner = CliRunner()


class Payload:
    """A pickle that, if loaded, creates a file (the issue's `id` as root, made harmless)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


TABLES = {
    "version_records": frozenset({struct.pack("<Q56s", 0x1234, b"printk"),
                                  struct.pack("<Q56s", 0x99, b"module_layout")}),
    "names": frozenset({"printk", "module_layout", "\u00e9t\u00e9"}),
    "gpl_only": frozenset({"module_layout"}),
    "namespaced": {"usb_thing": "USB_STORAGE"},
}


def test_tables_round_trip_and_anything_else_is_ignored(tmp_path: Path) -> None:
    data = encode_tables(TABLES)
    assert data is not None and data.startswith(b"KMODPY-TARGET 2\n")
    assert decode_tables(data) == TABLES
    marker = tmp_path / "ran"
    bad = [
        pickle.dumps(Payload(marker)),  # the old format, from someone else
        data[:-1],  # truncated
        data + b"x",  # trailing bytes
        data.replace(b"names ", b"nameZ "),
        data.replace(b"version_records 128", b"version_records 127"),
        b"",
    ]
    for blob in bad:
        assert decode_tables(blob) is None
    assert not marker.exists()
    empty = {"version_records": frozenset(), "names": frozenset(), "gpl_only": frozenset(),
             "namespaced": {}}
    assert decode_tables(encode_tables(empty) or b"") == empty


@pytest.mark.headers
def test_planted_pickle_in_the_cache_never_runs(  # type: ignore[no-untyped-def]
        built_hello, host_release, tmp_path, monkeypatch) -> None:
    """The issue's reproduction: a pickle where kmod-py keeps its check tables."""
    from kbuild_py.check.target import _cache_file
    from kbuild_py.kernels.buildtree import BuildTree

    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path / "cache"))
    tree = BuildTree.open(Path("/lib/modules") / host_release / "build")
    target = _cache_file([tree.symvers_path])
    assert target is not None
    target.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    for path in (target, target.with_suffix(".pickle")):
        path.write_bytes(pickle.dumps(Payload(marker)))
    # in-process on purpose: the planted Payload class must be importable for the pickle to
    # run, which it is here and would not be in the installed kmod-py
    res = runner.invoke(app, ["check", str(built_hello), "--kernel", host_release])
    assert res.exit_code == 0, res.output
    assert not marker.exists()
    assert decode_tables(target.read_bytes()) is not None  # rebuilt as data
    assert not target.with_suffix(".pickle").exists()  # old-format files are removed


def test_cache_dir_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path / "a" / "cache"))
    path = cache_dir()
    assert path.is_dir() and stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode, says", [(0o777, "writable by others (mode 0777)"),
                                        (0o1777, "writable by others (mode 1777)"),
                                        (0o775, "writable by its group (mode 0775)")])
def test_shared_cache_dir_is_refused(  # type: ignore[no-untyped-def]
        mode, says, tmp_path, monkeypatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setenv("KMOD_PY_CACHE", str(shared))
    with pytest.raises(UsageError, match=re.escape(f"cache directory {shared} is {says}")):
        cache_dir()
    # through the CLI: exit 2, one error line and a hint, before anything is downloaded
    res = runner.invoke(app, ["kernels", "--suite", "bookworm", "--mirror", "http://127.0.0.1:9"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert lines[0] == f"error: cache directory {shared} is {says}"
    assert lines[1].startswith("hint: use a directory of your own: set KMOD_PY_CACHE")


def test_cache_dir_of_another_user_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    require(os.geteuid() == 0, "root (chown to another user)")
    other = tmp_path / "theirs"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    monkeypatch.setenv("KMOD_PY_CACHE", str(other))
    with pytest.raises(UsageError, match=r"owned by uid 65534, not by you \(uid 0\)"):
        cache_dir()


def test_cache_path_that_is_a_file_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "file"
    f.write_text("")
    monkeypatch.setenv("KMOD_PY_CACHE", str(f))
    with pytest.raises(UsageError, match="cannot create the cache directory"):
        cache_dir()
