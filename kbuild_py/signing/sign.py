"""Sign modules with the target kernel's own scripts/sign-file: strip -> sign -> compress.

The order is DKMS's and Kbuild's modules_install's: debug info is stripped first (a strip
after signing would cut the signature off), then sign-file appends the PKCS#7 signature,
then the module is compressed (the kernel decompresses before it checks the signature).
A module that is already compressed is decompressed first and compressed again the same
way; one that is already signed has that signature removed first (sign-file would append
a second one, and the kernel would verify only the last, over the first).

sign-file runs through the target's Runner: on the host it is KDIR/scripts/sign-file; for
a container target it is the one inside the kernel-headers image (Debian's sign-file is
an amd64 host tool that signs modules of any architecture). The module, and for a
container the key and certificate, are staged in a private temporary directory (0700);
a container sees only that directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kbuild_py.check.elf.modfile import compression_of, read_module
from kbuild_py.check.elf.signature import read_trailer
from kbuild_py.errors import InfraError, UsageError
from kbuild_py.seams.process import Runner
from kbuild_py.signing.keys import KeyPair

if TYPE_CHECKING:
    from kbuild_py.kernels.spec import Target

SIGN_TIMEOUT = 120.0


def kernel_sig_hash(config: Mapping[str, str]) -> str | None:
    """CONFIG_MODULE_SIG_HASH of a kernel config ("sha256"), None when it signs no modules."""
    value = config.get("CONFIG_MODULE_SIG_HASH", "").strip('"')
    return value or None


def sign_file_argv(sign_file: str, hash_algo: str, key: str, cert: str, module: str) -> list[str]:
    """scripts/sign-file's command line (hash key x509 module: signs module in place)."""
    return [sign_file, hash_algo, key, cert, module]


def strip_argv(strip: str, module: str) -> list[str]:
    """What Kbuild's INSTALL_MOD_STRIP=1 and DKMS's STRIP do: drop debug sections only."""
    return [strip, "--strip-debug", module]


@dataclass(frozen=True)
class SignJob:
    """Where and how one kernel's modules are signed."""

    pair: KeyPair
    hash_algo: str
    sign_file: str  # path as the runner sees it, e.g. KDIR/scripts/sign-file
    runner: Runner
    on_host: bool  # False: the runner is a container that sees only the staging directory
    strip: str | None = None  # strip program (CROSS_COMPILE prefixed), None: no stripping
    compress: str | None = None  # force this compression (xz, zstd, gzip); None: keep the file's


@dataclass(frozen=True)
class SignedModule:
    path: Path
    hash_algo: str
    stripped: bool
    compression: str | None
    replaced_signature: bool
    size: int


def sign_module(path: Path, job: SignJob) -> SignedModule:
    """Strip, sign and compress one module file in place (replaced atomically)."""
    module = read_module(path)  # decompresses; ModuleReadError when it is not a module
    data = bytes(module.data)
    old = read_trailer(data)
    if old is not None:
        data = data[: old.start]
    compression = job.compress or module.compression
    with _staging(job) as (stage, key, cert):
        work = stage / (module.name + ".ko")
        work.write_bytes(data)
        if job.strip:
            _run(job, strip_argv(job.strip, str(work)), stage, "strip")
        _run(
            job,
            sign_file_argv(job.sign_file, job.hash_algo, key, cert, str(work)),
            stage,
            "sign-file",
        )
        signed = work.read_bytes()
    if read_trailer(signed) is None:
        raise InfraError(
            f"{job.sign_file} exited 0 but {path} carries no signature",
            "check that sign-file belongs to a kernel with CONFIG_MODULE_SIG",
        )
    out = compress(signed, compression) if compression else signed
    _replace(path, out)
    del module
    assert compression_of(out[:6]) == compression
    return SignedModule(
        path, job.hash_algo, bool(job.strip), compression, old is not None, len(out)
    )


@contextmanager
def _staging(job: SignJob) -> Iterator[tuple[Path, str, str]]:
    """A private directory for the work file; key and cert paths as the runner sees them."""
    stage = Path(tempfile.mkdtemp(prefix="kmod-py-sign-"))  # mode 0700
    try:
        if job.on_host:
            yield stage, str(job.pair.key.resolve()), str(job.pair.cert.resolve())
        else:
            key, cert = stage / "signing.key", stage / "signing.crt"
            shutil.copyfile(job.pair.key, key)
            os.chmod(key, 0o600)
            shutil.copyfile(job.pair.cert, cert)
            yield stage, str(key), str(cert)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _run(job: SignJob, argv: list[str], cwd: Path, what: str) -> None:
    lines: list[str] = []
    res = job.runner.run(argv, cwd=cwd, timeout=SIGN_TIMEOUT, on_line=lines.append)
    if res.returncode != 0 or res.timed_out:
        said = "; ".join(line.strip() for line in lines[-3:] if line.strip())
        status = "timed out" if res.timed_out else f"exit {res.returncode}"
        hint = (
            "the kernel's build tree has no scripts/sign-file: install its linux-kbuild package"
            if res.returncode == 127
            else "check the key and certificate (sign-file needs an unencrypted PEM key)"
        )
        raise InfraError(f"{what} failed ({status}): {said or argv[0]}", hint)


def compress(data: bytes, kind: str) -> bytes:
    """Compress like Kbuild's modules_install does (the kernel's decompressors read these)."""
    if kind == "xz":
        import lzma

        # xz --check=crc32 --lzma2=dict=1MiB: the in-kernel XZ decoder knows CRC32 only
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
    if kind == "gzip":
        import gzip

        return gzip.compress(data, compresslevel=9, mtime=0)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(data)
    raise UsageError(f"unknown compression {kind!r}", "one of: xz, zstd, gzip")


def _replace(path: Path, data: bytes) -> None:
    """Write next to path, then rename over it: a reader never sees half a module."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def job_for_target(
    target: Target,
    pair: KeyPair,
    *,
    hash_algo: str | None = None,
    strip: bool = False,
    make_vars: Mapping[str, str] | None = None,
    compress_as: str | None = None,
) -> SignJob:
    """How to sign for one target kernel: its sign-file, its CONFIG_MODULE_SIG_HASH (unless
    hash_algo is given), its runner; a cross build's strip is CROSS_COMPILE's."""
    algo = hash_algo or kernel_sig_hash(target.tree.config)
    if algo is None:
        raise UsageError(
            f"kernel {target.release} does not sign modules (no CONFIG_MODULE_SIG_HASH)",
            "its loader checks no signatures; pass --hash sha256 to sign anyway",
        )
    sign_file = f"{target.kdir}/scripts/sign-file"
    on_host = target.where == "host"
    if on_host and not os.access(sign_file, os.X_OK):
        raise UsageError(
            f"no scripts/sign-file in {target.kdir}",
            "install the kernel's linux-kbuild package (Debian: linux-kbuild-<version>), "
            "or build it: make -C KDIR scripts",
        )
    cross = (make_vars or {}).get("CROSS_COMPILE") or _default_cross(target.tree.srcarch)
    return SignJob(
        pair=pair,
        hash_algo=algo,
        sign_file=sign_file,
        runner=target.runner,
        on_host=on_host,
        strip=f"{cross}strip" if strip else None,
        compress=compress_as,
    )


# Debian's cross toolchains, for stripping another architecture's modules
_CROSS = {"arm64": "aarch64-linux-gnu-", "x86": "x86_64-linux-gnu-", "riscv": "riscv64-linux-gnu-"}
_HOST_ARCH = {"x86_64": "x86", "aarch64": "arm64", "riscv64": "riscv"}


def _default_cross(srcarch: str) -> str:
    """The CROSS_COMPILE prefix a kernel of srcarch needs on this machine ("" when native)."""
    if not srcarch or _HOST_ARCH.get(os.uname().machine) == srcarch:
        return ""
    return _CROSS.get(srcarch, "")
