"""kmod-py sign: sign existing module files with the target kernel's sign-file."""

from __future__ import annotations

from pathlib import Path

import typer


def sign(
    files: list[Path] = typer.Argument(..., help="Module files (.ko, .ko.xz, .ko.zst, .ko.gz)."),
    key: Path = typer.Option(None, "--key", help="Private key (PEM)."),
    cert: Path = typer.Option(None, "--cert", help="Certificate (DER or PEM)."),
    kernel: str = typer.Option(
        None, "--kernel", "-k", help="Kernel whose sign-file and hash to use (default: vermagic)."
    ),
    kdir: Path = typer.Option(None, "--kdir", help="Kernel build tree with scripts/sign-file."),
    hash_algo: str = typer.Option(
        None, "--hash", help="Hash (default: the kernel's CONFIG_MODULE_SIG_HASH)."
    ),
    strip: bool = typer.Option(False, "--strip", help="Strip debug info before signing."),
    compress_as: str = typer.Option(
        None, "--compress", help="Compress afterwards: xz, zstd or gzip (default: as it was)."
    ),
    mirror: str = typer.Option(None, "--mirror", help="Debian mirror for container images."),
) -> None:
    """Sign modules in place: strip -> sign -> compress, with the key pair from --key/--cert,
    kmod.toml [sign] (in the current directory), DKMS's mok.key/mok.pub, or `kmod-py
    keygen`'s. An existing signature is replaced. Each signature is verified against the
    certificate afterwards."""
    from kbuild_py.project.config import load_project
    from kbuild_py.signing.service import settings_for, sign_files

    def say(line: str) -> None:
        typer.echo(line, err=True)

    here = Path.cwd()  # a kmod.toml here may name the key pair ([sign])
    settings = settings_for(key, cert, hash_algo, strip, load_project(here).sign, here)
    results = sign_files(
        files,
        key=settings.pair.key,
        cert=settings.pair.cert,
        kernel=kernel,
        kdir=kdir,
        hash_algo=settings.hash_algo,
        strip=settings.strip,
        compress_as=compress_as,
        mirror=mirror,
        progress=say,
    )
    for r in results:
        extra = "".join(
            [
                ", stripped" if r.signed.stripped else "",
                f", {r.signed.compression}" if r.signed.compression else "",
            ]
        )
        again = " (old signature replaced)" if r.signed.replaced_signature else ""
        typer.echo(f"signed {r.signed.path}{again}")
        typer.echo(f"  {r.signed.hash_algo}, sign-file of {r.release} ({r.where}){extra}")
        typer.echo(f"  {r.verification.detail.split(': ', 1)[-1]}")
