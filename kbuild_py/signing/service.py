"""`kmod-py sign`: sign module files for the kernel each was built for, then verify them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kbuild_py.check.elf.modfile import read_module
from kbuild_py.errors import InfraError, UsageError
from kbuild_py.kernels.host import host_target
from kbuild_py.kernels.resolve import resolve_spec
from kbuild_py.signing.keys import KeyPair, find_pair
from kbuild_py.signing.sign import SignedModule, job_for_target, kernel_sig_hash, sign_module
from kbuild_py.signing.verify import TrustedCert, Verification, load_trusted, verify_module

if TYPE_CHECKING:
    from kbuild_py.kernels.spec import Target


@dataclass(frozen=True)
class SignOutcome:
    signed: SignedModule
    release: str
    where: str  # "host" or the image sign-file ran in
    verification: Verification


def sign_files(
    files: Sequence[Path],
    *,
    key: Path | None = None,
    cert: Path | None = None,
    configured: KeyPair | None = None,
    kernel: str | None = None,
    kdir: Path | None = None,
    hash_algo: str | None = None,
    strip: bool = False,
    compress_as: str | None = None,
    mirror: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SignOutcome]:
    """Sign each file with the sign-file of --kdir, --kernel, else the kernel in its vermagic."""
    if kernel is not None and kdir is not None:
        raise UsageError("--kernel and --kdir both given", "pass one kernel")
    pair = find_pair(key, cert, configured)
    trusted = load_trusted([pair.cert])
    releases = []
    for f in files:
        vermagic = read_module(f).vermagic  # ModuleReadError (exit 2) before anything is signed
        if kernel is None and kdir is None and not vermagic:
            raise UsageError(f"{f} has no vermagic", "name the kernel: --kernel SPEC or --kdir DIR")
        releases.append((vermagic or "").split(" ", 1)[0])
    targets: dict[str, Target] = {}
    out = []
    for f, release in zip(files, releases, strict=True):
        spec = str(kdir) if kdir is not None else (kernel or release)
        if spec not in targets:
            targets[spec] = _target(spec, kdir, mirror, progress)
        target = targets[spec]
        job = job_for_target(
            target, pair, hash_algo=hash_algo, strip=strip, compress_as=compress_as
        )
        signed = sign_module(Path(f), job)
        where = "host" if target.where == "host" else f"in {target.where}"
        out.append(SignOutcome(signed, target.release, where, _verified(Path(f), trusted)))
    return out


def _target(
    spec: str, kdir: Path | None, mirror: str | None, progress: Callable[[str], None] | None
) -> Target:
    if kdir is not None:
        return host_target(spec=spec, kdir=kdir)
    return resolve_spec(spec, mirror=mirror, progress=progress)


def _verified(path: Path, trusted: list[TrustedCert]) -> Verification:
    m = read_module(path)
    v = verify_module(bytes(m.data), trusted, m.name)
    if not v.ok:
        raise InfraError(
            f"{path} was signed but does not verify: {v.message}: {v.detail}",
            "the key and the certificate may not belong together",
        )
    return v


# --- signing in a build ----------------------------------------------------------------------


@dataclass(frozen=True)
class SignSettings:
    """`build --sign`: the key pair and how; hash None = each kernel's CONFIG_MODULE_SIG_HASH."""

    pair: KeyPair
    hash_algo: str | None = None
    strip: bool = False


@dataclass(frozen=True)
class BuildSigning:
    """What signing did to one kernel's modules."""

    signed: tuple[SignedModule, ...] = ()
    signer: str = ""  # "'CN' key HEX"
    note: str | None = None  # why nothing was signed


def settings_for(
    key: Path | None,
    cert: Path | None,
    hash_algo: str | None,
    strip: bool,
    project_sign: dict[str, object] | None = None,
    project_dir: Path | None = None,
) -> SignSettings:
    """Options first, then kmod.toml's [sign] (paths relative to the project), then the
    DKMS or kmod-py key pair."""
    table = project_sign or {}
    base = project_dir or Path.cwd()
    configured = None
    if "key" in table and "cert" in table:
        configured = KeyPair(base / str(table["key"]), base / str(table["cert"]), "kmod.toml")
    pair = find_pair(key, cert, configured)
    algo = hash_algo or (str(table["hash"]) if "hash" in table else None)
    return SignSettings(pair, algo, strip or bool(table.get("strip", False)))


def sign_built(
    modules: Sequence[Path],
    target: Target,
    settings: SignSettings,
    make_vars: Mapping[str, str] | None = None,
) -> BuildSigning:
    """Strip and sign a kernel's freshly built modules with its own sign-file, then verify
    each against the certificate. A kernel without CONFIG_MODULE_SIG_HASH checks no
    signatures: like DKMS, nothing is signed for it (unless a hash is given)."""
    if settings.hash_algo is None and kernel_sig_hash(target.tree.config) is None:
        return BuildSigning(note=f"not signed: {target.release} has no CONFIG_MODULE_SIG_HASH")
    job = job_for_target(
        target, settings.pair, hash_algo=settings.hash_algo, strip=settings.strip,
        make_vars=make_vars,
    )  # fmt: skip
    trusted = load_trusted([settings.pair.cert])
    signed, verdict = [], None
    for ko in modules:
        signed.append(sign_module(ko, job))
        verdict = _verified(ko, trusted)
    signer = verdict.detail.split(": signed by ", 1)[-1].split(", ", 1)[0] if verdict else ""
    return BuildSigning(tuple(signed), signer)
