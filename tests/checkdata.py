"""Real modules for the check tests, built once per test process against the host's headers.

One Kbuild directory builds every module at once (one `make`). Two negatives
cannot be produced by Kbuild itself because modpost refuses to finish the build
(`GPL-incompatible module ... uses GPL-only symbol`, `... uses symbol ... from
namespace CXL, but does not import it`): they are built as valid modules and then
one .modinfo string is blanked/replaced in the .ko (NUL padding, which the
loader and kmod skip) - exactly the module the loader would receive.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

from kbuild_py.kernels.buildtree import SNAPSHOT_FILES, BuildTree

_HEAD = "#include <linux/module.h>\n#include <linux/init.h>\n"


def _mod(name: str, body: str, init: str, tail: str) -> str:
    return (
        f"{_HEAD}{body}\nstatic int __init {name}_init(void)\n{{\n{init}\n\treturn 0;\n}}\n"
        f"static void __exit {name}_exit(void) {{ }}\nmodule_init({name}_init);\n"
        f"module_exit({name}_exit);\n{tail}\n"
    )


SOURCES = {
    # Licensed "Dual MIT/GPL" so modpost links it; the .ko's license is then made "Proprietary".
    "neg_prop": _mod(
        "neg_prop",
        "#include <linux/ktime.h>",
        '\tpr_info("t=%lld\\n", ktime_get());',
        'MODULE_LICENSE("Dual MIT/GPL");',
    ),
    # Imports CXL so modpost links it; the .ko's import_ns=CXL entry is then blanked.
    "neg_ns": _mod(
        "neg_ns",
        "#include <linux/ioport.h>",
        '\tpr_info("%px\\n", (void *)insert_resource_expand_to_fit);',
        'MODULE_LICENSE("GPL");\nMODULE_IMPORT_NS(CXL);',
    ),
    # Built with -fcommon: an uninitialised global stays an SHN_COMMON symbol.
    "neg_common": _mod(
        "neg_common", "int neg_common_counter;", "\tneg_common_counter++;", 'MODULE_LICENSE("GPL");'
    ),
    # A section that is both writable and executable.
    "neg_wx": _mod(
        "neg_wx",
        'asm(".section .wxtext,\\"awx\\",@progbits\\n.byte 0xc3\\n.previous");',
        "",
        'MODULE_LICENSE("GPL");',
    ),
    "provider": _mod(
        "provider",
        "int provider_fn(int x) { return x + 1; }\nEXPORT_SYMBOL_GPL(provider_fn);",
        "",
        'MODULE_LICENSE("GPL");',
    ),
    "consumer": _mod(
        "consumer",
        "int provider_fn(int x);",
        '\tpr_info("%d\\n", provider_fn(1));',
        'MODULE_LICENSE("GPL");',
    ),
    # Parameters with and without descriptions, a long MODULE_INFO key: modinfo format corners.
    "parms": _mod(
        "parms",
        "static int count = 1;\nmodule_param(count, int, 0444);\n"
        'MODULE_PARM_DESC(count, "How many");\n'
        'static char *label = "x";\nmodule_param(label, charp, 0444);\n'
        "static bool flag;\nmodule_param(flag, bool, 0644);\n"
        'MODULE_PARM_DESC(flag, "A flag: on/off");\n'
        'MODULE_INFO(a_rather_long_key_name, "value");\nMODULE_INFO(exactly15chars_, "v15");\n'
        'MODULE_ALIAS("parms-alias");\nMODULE_AUTHOR("kmod-py tests");\nMODULE_VERSION("1.2");\n'
        'MODULE_DESCRIPTION("Parameters for modinfo parity");',
        "",
        'MODULE_LICENSE("GPL v2");\nMODULE_SOFTDEP("pre: af_key");',
    ),
}

_CACHE: dict[str, dict[str, Path]] = {}


def patch_modinfo(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    """Copy src to dst with one .modinfo string replaced (new padded with NULs to old's length)."""
    from kbuild_py.check.elf.modfile import read_module

    assert len(new) <= len(old)
    data = bytearray(src.read_bytes())
    sec = read_module(src).section(".modinfo")
    assert sec is not None
    body = bytes(data[sec.offset : sec.offset + sec.size])
    assert body.count(old + b"\0") == 1, (old, body)
    at = sec.offset + body.index(old + b"\0")
    data[at : at + len(old)] = new + b"\0" * (len(old) - len(new))
    dst.write_bytes(bytes(data))
    return dst


def build_all(root: Path, kdir: Path) -> dict[str, Path]:
    """Build SOURCES in one Kbuild directory; derive the crafted and compressed copies."""
    key = f"{root}:{kdir}"
    if key in _CACHE:
        return _CACHE[key]
    src = root / "mods"
    src.mkdir(parents=True, exist_ok=True)
    for name, text in SOURCES.items():
        (src / f"{name}.c").write_text(text)
    (src / "Kbuild").write_text(
        "obj-m := " + " ".join(f"{n}.o" for n in SOURCES) + "\nCFLAGS_neg_common.o := -fcommon\n"
    )
    proc = subprocess.run(
        ["make", "-C", str(kdir), f"M={src}", "modules"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = {n: src / f"{n}.ko" for n in SOURCES}
    out["symvers"] = src / "Module.symvers"
    out["neg_prop"] = patch_modinfo(
        out["neg_prop"], root / "neg_prop.ko", b"license=Dual MIT/GPL", b"license=Proprietary"
    )
    out["neg_ns"] = patch_modinfo(out["neg_ns"], root / "neg_ns.ko", b"import_ns=CXL", b"")
    _CACHE[key] = out
    return out


def derived(root: Path, hello: Path) -> dict[str, Path]:
    """Stripped and compressed copies of a built module (the tools a distro would use)."""
    key = f"derived:{root}:{hello}"
    if key in _CACHE:
        return _CACHE[key]
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    stripped = root / "stripped" / hello.name
    stripped.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["strip", "--strip-all", "-o", str(stripped), str(hello)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    out["stripped"] = stripped
    raw = hello.read_bytes()
    xz = root / (hello.name + ".xz")
    xz.write_bytes(lzma.compress(raw, check=lzma.CHECK_CRC32))
    gz = root / (hello.name + ".gz")
    gz.write_bytes(gzip.compress(raw))
    zst = root / (hello.name + ".zst")
    if shutil.which("zstd"):
        subprocess.run(["zstd", "-q", "-f", str(hello), "-o", str(zst)], check=True, timeout=60)
    else:
        import zstandard

        zst.write_bytes(zstandard.ZstdCompressor().compress(raw))
    out.update(xz=xz, gz=gz, zst=zst)
    _CACHE[key] = out
    return out


def sign(root: Path, kdir: Path, module: Path, cn: str = "kmod-py test key") -> dict[str, object]:
    """A copy of module signed with the tree's scripts/sign-file and a fresh openssl key."""
    root.mkdir(parents=True, exist_ok=True)
    key, cert = root / "key.pem", root / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-subj",
            f"/O=kmod-py/CN={cn}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    serial = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    signed = root / module.name
    shutil.copyfile(module, signed)
    subprocess.run(
        [str(kdir / "scripts/sign-file"), "sha256", str(key), str(cert), str(signed)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    hexed = serial.strip().split("=", 1)[1].upper()
    while hexed.startswith("00"):  # the key id kmod shows is the serial's bytes, no leading 00
        hexed = hexed[2:]
    return {"path": signed, "serial": hexed, "cn": cn}


def crafted_tree(
    root: Path,
    tree,
    *,
    release: str = "6.1.0-99-amd64",
    drop: tuple[str, ...] = (),
    add: tuple[str, ...] = (),
    crc_of: dict[str, int] | None = None,
):  # type: ignore[no-untyped-def]
    """A copy of a build tree's files with another release, Kconfig changes and altered CRCs."""
    import re

    snap = snapshot_into(tree, root)
    uts = root / "include/generated/utsrelease.h"
    uts.write_text(f'#define UTS_RELEASE "{release}"\n')
    conf = root / "include/config/auto.conf"
    text = conf.read_text()
    for opt in drop:
        text = re.sub(rf"(?m)^{opt}=.*\n", "", text)
    text += "".join(f"{opt}=y\n" for opt in add)
    conf.write_text(text)
    if crc_of:
        sv = root / "Module.symvers"
        lines = []
        for line in sv.read_text().splitlines():
            f = line.split("\t")
            if len(f) > 1 and f[1] in crc_of:
                f[0] = f"0x{crc_of[f[1]]:08x}"
            lines.append("\t".join(f))
        sv.write_text("\n".join(lines) + "\n")
    assert snap.path == root.resolve()
    return BuildTree(root.resolve())


def snapshot_into(tree: BuildTree, dest: Path) -> BuildTree:
    """Copy the files a BuildTree reads into dest and return a tree over the copy."""
    for rel in SNAPSHOT_FILES:
        src = tree.path / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)
    return BuildTree(dest.resolve(), arch=tree.arch)
