"""A kernel that trusts the user's key loads the signed module under module.sig_enforce=1.

The kernel is tests/tinykernel.py's: Debian's linux-source-6.1, tinyconfig plus module
signing, CONFIG_SYSTEM_TRUSTED_KEYS = the tests' certificate; built once per machine
(`make tiny-kernel`, ~10 minutes on two cores) and cached. The module is built against that
tree with `kmod-py build --sign`, then booted with the same guest `kmod-py test` uses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tinykernel
from conftest import run_kmod_py

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


@pytest.fixture(scope="module")
def tiny() -> dict[str, Path]:
    from conftest import require

    require(shutil.which("make") is not None and shutil.which("gcc") is not None, "make and gcc")
    key, cert, pem = tinykernel.test_keypair()
    tree, image = tinykernel.ensure(pem)
    return {"key": key, "cert": cert, "tree": tree, "image": image}


def _boot(ko: Path, tiny: dict[str, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    from kbuild_py.boot import run as tr
    from kbuild_py.debian.linuximage import KernelImage

    release = (tiny["tree"] / "include/config/kernel.release").read_text().strip()
    root = tmp_path / "image"
    (root / "boot").mkdir(parents=True, exist_ok=True)
    (root / "lib/modules" / release / "kernel").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny["image"], root / "boot" / f"vmlinuz-{release}")
    job = tr.KernelTest("tiny", release, (ko,), tmp_path / "out")
    opts = tr.TestOptions(timeout=120, accel="tcg", sig_enforce=True)
    return tr.run_one(job, opts, fetch=lambda r, s, m: KernelImage(release, root))


def test_trusted_key_loads_under_enforcement(
    tiny: dict[str, Path], scaffold, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    project = scaffold("tiny_signed")
    res = run_kmod_py(["build", str(project), "--kdir", str(tiny["tree"]), "--sign",
         "--key", str(tiny["key"]), "--cert", str(tiny["cert"]), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (ko,) = [Path(m["path"]) for m in json.loads(res.stdout)[0]["modules"]]

    signed = _boot(ko, tiny, tmp_path / "signed")
    assert signed.status == "pass", (signed.error, signed.verdict)
    assert signed.verdict is not None and "E" not in signed.verdict.taint_text
    step = signed.verdict.step("insmod", "tiny_signed")
    assert step is not None and not [k for k in step.kernel if "rejected" in k]

    unsigned_ko = tmp_path / "unsigned" / ko.name
    unsigned_ko.parent.mkdir()
    from kbuild_py.check.elf.signature import read_trailer

    data = ko.read_bytes()
    unsigned_ko.write_bytes(data[: read_trailer(data).start])  # type: ignore[union-attr]
    refused = _boot(unsigned_ko, tiny, tmp_path / "unsigned")
    assert refused.status == "fail"
    assert refused.verdict is not None
    assert any("rejected: unsigned module" in h for h in refused.verdict.hints)
