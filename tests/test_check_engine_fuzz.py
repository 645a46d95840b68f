"""Bad input: hypothesis mutations and truncations of real .ko files.

Every case must end as a one-line ModuleReadError (exit 2) or a report whose
rendering works (exit 0/1): never another exception, never a hang. Most cases
run in-process (module_from_bytes + all rules against the host tree + every
renderer); a batch of them also goes through the CLI. Total: 10,400 cases,
deterministic (derandomize) so CI runs the same ones.
"""

from __future__ import annotations

import json
import lzma
import struct
from collections import Counter
from pathlib import Path

import checkdata
import pytest
from conftest import run_kmod_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbuild_py.check.elf.modfile import module_from_bytes, read_module
from kbuild_py.check.engine import run_rules, target_info
from kbuild_py.check.model import TargetInfo
from kbuild_py.errors import ModuleReadError
from kbuild_py.kernels.buildtree import BuildTree
from kbuild_py.report.check import modinfo_text, report_dict, report_text

pytestmark = pytest.mark.headers
FUZZ = settings(
    max_examples=2500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CORPUS: dict[str, bytes] = {}
TARGET: list[TargetInfo] = []
SEEN: Counter[str] = Counter()  # outcomes of every in-process case


@pytest.fixture(scope="module", autouse=True)
def corpus(tmp_path_factory: pytest.TempPathFactory, built_hello: Path, host_kdir: Path) -> None:
    mods = checkdata.build_all(tmp_path_factory.getbasetemp() / "checkdata", host_kdir)
    CORPUS["hello"] = built_hello.read_bytes()
    CORPUS["parms"] = mods["parms"].read_bytes()
    CORPUS["consumer"] = mods["consumer"].read_bytes()
    signed = checkdata.sign(tmp_path_factory.mktemp("fuzzsign"), host_kdir, mods["parms"])
    CORPUS["signed"] = Path(signed["path"]).read_bytes()  # type: ignore[arg-type]
    TARGET[:] = [target_info(BuildTree.open(host_kdir))]


def outcome(data: bytes) -> str:
    """'unreadable' or 'ok'/'failed'; raises on anything a user would see as a traceback."""
    result = _outcome(data)
    SEEN[result] += 1
    return result


def _outcome(data: bytes) -> str:
    try:
        m = module_from_bytes(data, "fuzz.ko")
    except ModuleReadError as err:
        assert err.message.startswith("fuzz.ko: ") and "\n" not in err.message
        return "unreadable"
    r = run_rules(m, TARGET[0])
    if r.error is not None:
        assert "\n" not in r.error
        return "unreadable"
    modinfo_text(m)
    report_text(r)
    json.dumps(report_dict(r))
    return "ok" if r.ok else "failed"


def _sections(data: bytes) -> list[tuple[int, int]]:
    m = read_module_bytes(data)
    return [(s.offset, s.size) for s in m.sections]


def read_module_bytes(data: bytes):  # type: ignore[no-untyped-def]
    return module_from_bytes(data, "corpus.ko")


@st.composite
def mutated(draw):  # type: ignore[no-untyped-def]
    """Byte flips aimed at the structures a reader trusts: ELF header, section headers,
    section contents (.modinfo, symtab, __versions ...), the signature trailer."""
    name = draw(st.sampled_from(sorted(CORPUS)))
    data = bytearray(CORPUS[name])
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    regions = [
        (0, 64),
        (shoff, len(data) - shoff if name != "signed" else 64 * 40),
        (len(data) - 600, 600),
    ]
    regions += draw(st.lists(st.sampled_from(_sections(bytes(data))), min_size=1, max_size=3))
    for _ in range(draw(st.integers(1, 8))):
        start, size = draw(st.sampled_from(regions))
        if size <= 0:
            continue
        at = min(len(data) - 1, start + draw(st.integers(0, size - 1)))
        data[at] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def field_overwrites(draw):  # type: ignore[no-untyped-def]
    """Section header fields (offset, size, link, name, type, flags) set to hostile values."""
    data = bytearray(CORPUS[draw(st.sampled_from(sorted(CORPUS)))])
    shoff, shnum = struct.unpack_from("<Q", data, 0x28)[0], struct.unpack_from("<H", data, 0x3C)[0]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, shnum - 1))
        field, fmt = draw(
            st.sampled_from(
                [
                    (0, "<I"),
                    (4, "<I"),
                    (8, "<Q"),
                    (24, "<Q"),
                    (32, "<Q"),
                    (40, "<I"),
                    (44, "<I"),
                    (56, "<Q"),
                ]
            )
        )
        bits = 32 if fmt == "<I" else 64
        value = draw(
            st.one_of(st.integers(0, 2**bits - 1), st.sampled_from([0, 1, 2, 3, 8, 0xFFFF]))
        )
        struct.pack_into(fmt, data, shoff + i * 64 + field, value)
    if draw(st.booleans()):  # and maybe the ELF header's table fields
        off, fmt = draw(st.sampled_from([(0x28, "<Q"), (0x3A, "<H"), (0x3C, "<H"), (0x3E, "<H")]))
        struct.pack_into(fmt, data, off, draw(st.integers(0, 2 ** (64 if fmt == "<Q" else 16) - 1)))
    return bytes(data)


@given(mutated())
@FUZZ
def test_byte_mutations(data: bytes) -> None:
    outcome(data)


@given(field_overwrites())
@FUZZ
def test_section_header_overwrites(data: bytes) -> None:
    outcome(data)


@given(st.sampled_from(["hello", "parms", "signed"]), st.floats(0, 1), st.binary(max_size=64))
@FUZZ
def test_truncations_and_appends(name: str, frac: float, tail: bytes) -> None:
    base = CORPUS[name]
    cut = base[: int(len(base) * frac)]
    result = outcome(cut + tail)
    if not tail and len(cut) < len(base) * 0.9:
        # the section header table sits at the end: cutting into the body must be refused
        assert result == "unreadable"


@given(
    st.sampled_from(["hello", "signed"]),
    st.integers(0, 2**31),
    st.integers(1, 4),
    st.sampled_from(["xz", "trunc"]),
)
@FUZZ
def test_compressed_mutations(name: str, seed: int, flips: int, how: str) -> None:
    if name not in COMPRESSED:
        COMPRESSED[name] = lzma.compress(CORPUS[name])
    packed = bytearray(COMPRESSED[name])
    if how == "trunc":
        packed = packed[: seed % len(packed)]
    else:
        for k in range(flips):
            packed[(seed * (k + 7)) % len(packed)] ^= 1 + (seed >> (k * 8)) % 255
    outcome(bytes(packed))


COMPRESSED: dict[str, bytes] = {}


def test_cli_on_mutated_files(tmp_path: Path) -> None:
    """400 mutated files through `kmod-py check` (one run, several worker processes, and a few
    single-file runs): exit 0/1/2, only one-line `error:` messages, never a traceback."""
    import random

    rnd = random.Random(1234)
    files = []
    for i in range(400):
        data = bytearray(CORPUS[rnd.choice(sorted(CORPUS))])
        if i % 3 == 0:
            data = data[: rnd.randrange(len(data))]
        for _ in range(rnd.randint(1, 6)):
            data[rnd.randrange(min(len(data), 4096) if i % 2 else len(data))] = rnd.randrange(256)
        p = tmp_path / f"m{i:03d}.ko"
        p.write_bytes(bytes(data))
        files.append(p)
    res = run_kmod_py(["check", *files, "--kdir", TARGET[0].source])
    assert res.exit_code in (0, 1, 2), res.output[-2000:]
    assert "Traceback" not in res.output
    for line in res.stderr.splitlines():
        assert line.startswith("error: ") and str(tmp_path) in line, line
    for p in files[:12]:
        one = run_kmod_py(["check", p, "--json"])
        assert one.exit_code in (0, 1, 2) and "Traceback" not in one.output
        if one.exit_code != 2:
            json.loads(one.stdout)


def test_decompression_is_bounded(tmp_path: Path, monkeypatch) -> None:
    from kbuild_py.check.elf import decompress

    monkeypatch.setattr(decompress, "MAX_DECOMPRESSED", 1 << 20)
    bomb = tmp_path / "bomb.ko.xz"
    bomb.write_bytes(lzma.compress(b"\0" * (8 << 20)))
    with pytest.raises(ModuleReadError, match="expands beyond"):
        read_module(bomb)


def test_fuzz_reached_every_outcome() -> None:
    """Runs last: the cases above really ran, and reached all three exits."""
    print(dict(SEEN))
    assert sum(SEEN.values()) >= 10_000, SEEN
    assert SEEN["unreadable"] > 500 and SEEN["failed"] > 500 and SEEN["ok"] > 100, SEEN
