"""A tiny x86-64 kernel that trusts one certificate, built from Debian's linux-source-6.1.

Debian's kernels trust only Debian's keys when there is no UEFI MOK list (a QEMU guest
has none), so a module signed with the user's key is refused under module.sig_enforce=1.
This kernel is tinyconfig plus what a kmod-py guest needs (serial console, initramfs,
devtmpfs, modules, module signing) with CONFIG_SYSTEM_TRUSTED_KEYS = the certificate:
the signed module loads under enforcement, an unsigned one is refused.

Built once per machine and certificate, under $KMOD_PY_CACHE/tiny-kernel/<cert hash>/
(src/ is the build tree for out-of-tree modules, bzImage the kernel); ~10 minutes on
two cores. `make tiny-kernel` builds it with the tests' key; the `slow` test uses it.

usage: python tests/tinykernel.py [CERT.pem]   (default: the tests' key; prints the tree
       and the bzImage)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SOURCE_PACKAGE = "linux-source-6.1"
ENABLE = [
    "64BIT", "PRINTK", "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE", "BLK_DEV_INITRD",
    "RD_GZIP", "BINFMT_ELF", "BINFMT_SCRIPT", "PROC_FS", "SYSFS", "DEVTMPFS", "MULTIUSER",
    "FUTEX", "MODULES", "MODULE_UNLOAD", "MODULE_SIG", "MODULE_SIG_SHA256",
    "MODULE_SIG_KEY_TYPE_RSA", "SYSTEM_DATA_VERIFICATION", "SYSTEM_TRUSTED_KEYRING",
    "KEYS", "CRYPTO", "CRYPTO_RSA", "CRYPTO_SHA256", "ASYMMETRIC_KEY_TYPE",
    "ASYMMETRIC_PUBLIC_KEY_SUBTYPE", "X509_CERTIFICATE_PARSER", "PKCS7_MESSAGE_PARSER",
    "UNWINDER_FRAME_POINTER", "PCI", "ACPI",  # ACPI: poweroff -f ends the guest
]  # fmt: skip
DISABLE = ["MODULE_SIG_FORCE", "UNWINDER_ORC", "DEBUG_INFO", "MODVERSIONS"]


def cache_root() -> Path:
    base = os.environ.get("KMOD_PY_CACHE") or str(Path.home() / ".cache/kmod-py")
    return Path(base) / "tiny-kernel"


def test_keypair() -> tuple[Path, Path, Path]:
    """The tests' signing key, made once per machine: (key, DER cert, PEM cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from kbuild_py.signing.keys import KeyPair, keygen

    d = cache_root() / "key"
    pair = KeyPair(d / "mok.key", d / "mok.der", "options")
    keygen(pair, common_name="kmod-py tiny kernel test key")
    pem = d / "mok.pem"
    if not pem.is_file():
        cert = x509.load_der_x509_certificate(pair.cert.read_bytes())
        pem.write_bytes(cert.public_bytes(Encoding.PEM))
    return pair.key, pair.cert, pem


def ensure(cert_pem: Path, log=print) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """(build tree, bzImage) of the tiny kernel trusting cert_pem; built when missing."""
    recipe = " ".join([SOURCE_PACKAGE, *ENABLE, "-", *DISABLE]).encode()
    tag = hashlib.sha256(cert_pem.read_bytes() + recipe).hexdigest()[:12]
    home = cache_root() / tag
    tree, image = home / "src", home / "bzImage"
    if (home / ".complete").is_file():
        return tree, image
    home.mkdir(parents=True, exist_ok=True)
    if tree.exists():
        shutil.rmtree(tree)
    _unpack_source(home, tree, log)
    shutil.copyfile(cert_pem, tree / "trusted.pem")
    cfg = [str(tree / "scripts/config"), "--file", str(tree / ".config")]
    _run(["make", "-C", str(tree), "tinyconfig"], log)
    args = [a for o in ENABLE for a in ("--enable", o)]
    args += [a for o in DISABLE for a in ("--disable", o)]
    args += ["--set-str", "SYSTEM_TRUSTED_KEYS", "trusted.pem"]
    args += ["--set-str", "MODULE_SIG_HASH", "sha256"]
    _run([*cfg, *args], log)
    _run(["make", "-C", str(tree), "olddefconfig"], log)
    _run(["make", "-C", str(tree), f"-j{os.cpu_count() or 2}", "bzImage", "modules"], log)
    shutil.copyfile(tree / "arch/x86/boot/bzImage", image)
    (home / ".complete").write_text(tag + "\n")
    return tree, image


def _unpack_source(home: Path, tree: Path, log) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.debian.linuximage import fetch_deb

    deb = fetch_deb(SOURCE_PACKAGE)
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        _run(["dpkg-deb", "-x", str(deb), tmp], log)
        (tarball,) = Path(tmp).glob("usr/src/linux-source-*.tar.xz")
        log(f"unpacking {tarball.name}")
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="tar")
        (src,) = [p for p in Path(tmp).glob("linux-source-*") if p.is_dir()]
        os.replace(src, tree)


def _run(argv: list[str], log) -> None:  # type: ignore[no-untyped-def]
    log("$ " + " ".join(argv[:6]) + (" ..." if len(argv) > 6 else ""))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


if __name__ == "__main__":
    tree, image = ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else test_keypair()[2])
    print(tree)
    print(image)
