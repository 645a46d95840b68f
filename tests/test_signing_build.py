"""build --sign on the host and in a container, and test --sig-enforce on a Debian kernel.

keygen -> build --sign -> check --cert passes; the signing ran with the target kernel's own
scripts/sign-file (the host's headers, or the one inside the kernel-headers image).
Booted with module.sig_enforce=1, Debian's kernel refuses an unsigned module and a module
signed with the user's key alike (a QEMU guest has no MOK list: only Debian's keys count).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import Ran, run_kmod_py

from kbuild_py.check.elf.modfile import read_module


def kmod(*args: object) -> Ran:
    return run_kmod_py(args)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("key")
    res = kmod("keygen", "--key", d / "mok.key", "--cert", d / "mok.der", "--cn", "build test key")
    assert res.exit_code == 0, res.output
    return d / "mok.key", d / "mok.der"


def _signed_build(project: Path, keypair: tuple[Path, Path], *kernel: str) -> list[dict]:  # type: ignore[type-arg]
    key, cert = keypair
    res = kmod("build", project, *kernel, "--sign", "--key", key, "--cert", cert, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.headers
def test_build_sign_on_the_host(
    scaffold,
    host_release: str,
    keypair: tuple[Path, Path],  # type: ignore[no-untyped-def]
) -> None:
    project = scaffold("signed_mod")
    (row,) = _signed_build(project, keypair, "--kernel", host_release)
    (mod,) = row["modules"]
    assert mod["signed"]["hash_algo"] == "sha256" and not mod["signed"]["stripped"]
    assert mod["signed"]["signer"].startswith("'build test key' key ")
    ko = Path(mod["path"])
    assert read_module(ko).signature.pkcs7.signer == "build test key"  # type: ignore[union-attr]
    check = kmod("check", ko, "--cert", keypair[1], "--kernel", host_release)
    assert check.exit_code == 0, check.output
    assert "signature verified" in check.stdout
    # the text report says so too
    text = kmod("build", project, "--kernel", host_release, "--sign", "--key", keypair[0],
                "--cert", keypair[1])  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "signed: sha256, 'build test key' key" in text.stdout
    # --strip: the stripped module is signed (strip after signing would cut the signature off)
    res = kmod("build", project, "--kernel", host_release, "--sign", "--strip", "--key",
               keypair[0], "--cert", keypair[1], "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    (mod,) = json.loads(res.stdout)[0]["modules"]
    assert mod["signed"]["stripped"] and mod["size"] < 30_000
    assert kmod("check", mod["path"], "--cert", keypair[1]).exit_code == 0
    # --key without --sign is a mistake, said before building
    res = kmod("build", project, "--kernel", host_release, "--key", keypair[0])
    assert res.exit_code == 2 and "go with --sign" in res.output


@pytest.mark.docker
@pytest.mark.parametrize("spec", ["debian:bookworm", "debian:bookworm/arm64"])
def test_build_sign_in_a_container(
    scaffold,
    docker_client,
    keypair: tuple[Path, Path],
    spec: str,  # type: ignore[no-untyped-def]
) -> None:
    """The sign-file inside the kernel-headers image signs (for arm64 too: Debian's sign-file
    is an amd64 host tool); --strip uses the cross strip; the key is staged, never copied
    into the project."""
    project = scaffold("signed_ctr")
    key, cert = keypair
    res = kmod("build", project, "--kernel", spec, "--sign", "--strip", "--key", key,
               "--cert", cert, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["where"].startswith("kmod-py/kernel:")
    (mod,) = row["modules"]
    assert mod["signed"]["stripped"]
    ko = Path(mod["path"])
    m = read_module(ko)
    assert m.machine == ("EM_AARCH64" if spec.endswith("arm64") else "EM_X86_64")
    assert kmod("check", ko, "--cert", cert).exit_code == 0
    assert not [p for p in project.rglob("*") if p.name in ("signing.key", "signing.crt")]


@pytest.mark.qemu
@pytest.mark.headers
def test_sig_enforce_on_a_debian_kernel(
    built_hello: Path, host_release: str, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    unsigned = tmp_path / "unsigned" / "hello_module.ko"
    signed = tmp_path / "signed" / "hello_module.ko"
    for p in (unsigned, signed):
        p.parent.mkdir()
        shutil.copyfile(built_hello, p)
    key, cert = keypair
    res = kmod("sign", signed, "--key", key, "--cert", cert, "--kernel", host_release)
    assert res.exit_code == 0, res.output

    enforce = ("--kernel", host_release, "--sig-enforce", "--accel", "tcg")
    res = kmod("test", "--ko", unsigned, *enforce)
    assert res.exit_code == 1, res.output
    out = res.stdout
    assert "rejected: unsigned module" in out
    kernel_said = [x for x in out.splitlines() if x.startswith("    [")]
    # the refusal of kmod-py's gzipped first attempt (an artefact) is not shown
    assert sum("Loading of unsigned module is rejected" in x for x in kernel_said) == 1
    assert "kmod-py build --sign" in out and "mokutil --import" in out

    res = kmod("test", "--ko", signed, *enforce)
    assert res.exit_code == 1, res.output
    out = res.stdout
    assert "Loading of module with unavailable key is rejected" in out
    assert "rejected: signed with a key the kernel does not trust" in out
    assert "Loading of unsigned module is rejected" not in out
