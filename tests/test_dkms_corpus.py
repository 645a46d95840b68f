"""Real Debian -dkms packages built by `kmod-py build` and by a real `dkms build`, side by side
on the host's headers: the same module set and the same exit status (issue 10)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dkmscorpus  # noqa: E402
from conftest import require  # noqa: E402

KMOD = ""  # the installed kmod-py (the kmod_py_bin fixture)
pytestmark = [pytest.mark.headers, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _installed_kmod_py(kmod_py_bin: Path) -> None:
    global KMOD
    KMOD = str(kmod_py_bin)


@pytest.fixture(scope="session")
def corpus() -> dict[str, Path]:
    require(shutil.which("dkms") is not None, "dkms (apt-get install dkms)")
    try:
        return dkmscorpus.fetch_all()
    except dkmscorpus.CorpusUnavailable as e:
        require(False, f"the -dkms corpus ({e})")
        raise


def kmod_build(src: Path, release: str) -> tuple[int, dict]:
    res = subprocess.run(
        [KMOD, "build", str(src), "--kernel", release, "--json"],
        capture_output=True, text=True, timeout=900,
    )
    assert res.stdout.strip(), res.stderr
    return res.returncode, json.loads(res.stdout)[0]


@pytest.mark.parametrize("package", dkmscorpus.PACKAGES)
def test_kmod_py_builds_what_dkms_builds(
    package: str, corpus: dict[str, Path], host_release: str, tmp_path: Path
) -> None:
    src = dkmscorpus.fresh_copy(corpus[package], tmp_path / "kmod")
    pristine = sorted(p.relative_to(src) for p in src.rglob("*"))
    rc, doc = kmod_build(src, host_release)
    dkms_rc, dkms_mods = dkmscorpus.dkms_build(corpus[package], host_release, tmp_path / "dkms")
    name, version = dkmscorpus.read_name_version(corpus[package])
    assert (doc["package"], doc["version"]) == (name, version)
    built = {Path(m["path"]).name[:-3].replace("-", "_") for m in doc["modules"]}
    if dkms_rc == 77:  # BUILD_EXCLUSIVE: dkms refuses the kernel, kmod-py says why
        assert rc == 0 and doc["result"] == "excluded" and doc["excluded"]
        return
    assert (rc == 0) == (dkms_rc == 0), (rc, dkms_rc, doc["errors"][:3], doc["error"])
    if dkms_rc == 0:
        assert built >= dkms_mods and dkms_mods, (built, dkms_mods)
        assert {e.replace("-", "_") for e in doc["expected"]} == dkms_mods
        assert doc["missing"] == [] and doc["result"] == "ok"
    else:
        assert doc["result"] == "FAILED" and doc["errors"], doc
    # the user's tree is untouched: only .kmod-py/ was added
    after = sorted(p.relative_to(src) for p in src.rglob("*") if ".kmod-py" not in p.parts)
    assert after == [p for p in pristine]
