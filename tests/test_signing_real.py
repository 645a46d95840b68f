"""keygen -> sign -> check --cert with the kernel's own scripts/sign-file and kmod's modinfo.

The module is built against the Debian headers on the host (session fixture built_hello);
sign-file is the one those headers ship (/usr/lib/linux-kbuild-*/scripts/sign-file).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Ran, installed_kmod_py, require, run_kmod_py

from kbuild_py.check.elf.modfile import read_module
from kbuild_py.report.check import modinfo_text

pytestmark = pytest.mark.headers


def kmod(*args: object) -> Ran:
    return run_kmod_py(args)


def modinfo(path: Path) -> str:
    require(shutil.which("modinfo") is not None, "kmod's modinfo")
    return subprocess.run(
        ["modinfo", str(path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout


@pytest.fixture(scope="module")
def keypairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    out = {}
    for who in ("mine", "other"):
        d = tmp_path_factory.mktemp(who)
        res = kmod("keygen", "--key", d / "mok.key", "--cert", d / "mok.der", "--cn", f"{who} key")
        assert res.exit_code == 0, res.output
        out[who] = (d / "mok.key", d / "mok.der")
    return out


def test_keygen_output_and_reuse(keypairs: dict[str, tuple[Path, Path]]) -> None:
    key, cert = keypairs["mine"]
    res = kmod("keygen", "--key", key, "--cert", cert)
    assert res.exit_code == 0, res.output
    assert f"key:         {key}  (exists, reused)" in res.stdout
    assert f"sudo mokutil --import {cert}" in res.stdout
    assert "codeSigning" in res.stdout


def test_sign_then_check_cert(
    built_hello: Path, host_kdir: Path, tmp_path: Path, keypairs: dict[str, tuple[Path, Path]]
) -> None:
    key, cert = keypairs["mine"]
    ko = tmp_path / "hello_module.ko"
    shutil.copyfile(built_hello, ko)
    res = kmod("sign", ko, "--key", key, "--cert", cert, "--kdir", host_kdir)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"signed {ko}\n  sha256, sign-file of ")
    m = read_module(ko)
    assert m.signature is not None and m.signature.pkcs7.signer == "mine key"  # type: ignore[union-attr]
    # kmod's modinfo (OpenSSL's PKCS#7 reader) and kmod-py's agree byte for byte
    assert modinfo_text(m) == modinfo(ko)
    assert "signer:         mine key\n" in modinfo(ko)

    ok = kmod("check", ko, "--cert", cert)
    assert ok.exit_code == 0, ok.output
    assert "hello_module: signature verified: signed by 'mine key'" in ok.stdout

    other = kmod("check", ko, "--cert", keypairs["other"][1])
    assert other.exit_code == 1
    assert (
        "hello_module: Loading of module with unavailable key is rejected (-ENOKEY)" in other.stdout
    )

    flipped = tmp_path / "flipped" / "hello_module.ko"
    flipped.parent.mkdir()
    data = bytearray(ko.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit in the module body, well before the signature
    flipped.write_bytes(bytes(data))
    bad = kmod("check", flipped, "--cert", cert)
    assert bad.exit_code == 1
    assert "Key was rejected by service (-EKEYREJECTED)" in bad.stdout
    assert "the module changed after it was signed" in bad.stdout

    unsigned = kmod("check", built_hello, "--cert", cert)
    assert unsigned.exit_code == 1
    assert "Loading of unsigned module is rejected (-ENODATA)" in unsigned.stdout


def test_check_cert_through_the_fast_path(
    built_hello: Path, host_kdir: Path, tmp_path: Path, keypairs: dict[str, tuple[Path, Path]]
) -> None:
    """`kmod-py check FILE --cert C` without typer (checkmain.main_fast) gives the same verdicts."""
    key, cert = keypairs["mine"]
    ko = tmp_path / "hello_module.ko"
    shutil.copyfile(built_hello, ko)
    assert kmod("sign", ko, "--key", key, "--cert", cert, "--kdir", host_kdir).exit_code == 0
    exe = installed_kmod_py()
    for c, code in ((cert, 0), (keypairs["other"][1], 1)):
        proc = subprocess.run(
            [str(exe), "check", str(ko), f"--cert={c}"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == code, proc.stderr
    proc = subprocess.run(
        [str(exe), "check", str(ko), "--cert", str(key)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "is not an X.509 certificate" in proc.stderr


def test_sign_compressed_and_stripped(
    built_hello: Path, host_kdir: Path, tmp_path: Path, keypairs: dict[str, tuple[Path, Path]]
) -> None:
    """strip -> sign -> compress: an .ko.xz stays xz, its inner module is signed and stripped."""
    key, cert = keypairs["mine"]
    require(shutil.which("strip") is not None, "binutils' strip")
    xz = tmp_path / "hello_module.ko.xz"
    shutil.copyfile(built_hello, tmp_path / "plain.ko")
    assert (
        kmod(
            "sign",
            tmp_path / "plain.ko",
            "--key",
            key,
            "--cert",
            cert,
            "--kdir",
            host_kdir,
            "--compress",
            "xz",
        ).exit_code
        == 0
    )
    (tmp_path / "plain.ko").rename(xz)
    res = kmod("sign", xz, "--key", key, "--cert", cert, "--kdir", host_kdir, "--strip")
    assert res.exit_code == 0, res.output
    assert "(old signature replaced)" in res.stdout and "stripped, xz" in res.stdout
    m = read_module(xz)
    assert m.compression == "xz" and m.section(".debug_info") is None
    assert len(m.data) < built_hello.stat().st_size // 2
    assert modinfo_text(m) == modinfo(xz)
    assert kmod("check", xz, "--cert", cert).exit_code == 0
