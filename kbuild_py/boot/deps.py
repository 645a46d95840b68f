"""In-kernel dependencies of a module, resolved through a kernel's own module tree.

Debian's linux-image packages ship no modules.dep, so dependencies come from each
module's `depends=` (.modinfo), followed recursively. Compressed modules (.ko.xz,
.ko.zst, .ko.gz — detected by magic) are decompressed in Python, because the
guest's busybox insmod only loads plain ELF.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.check.elf import decompress as _dec
from kbuild_py.check.elf.modfile import ModuleFile
from kbuild_py.errors import ModuleReadError, UsageError

_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def module_name(path: Path | str) -> str:
    """The kernel's name for a module file: basename without .ko*, '-' and ',' -> '_'."""
    base = Path(path).name
    for suffix in _SUFFIXES[::-1]:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_").replace(",", "_")


def decompress(data: bytes, where: str = "module") -> bytes:
    """Plain ELF bytes of a module file, whatever its compression (by magic), through the one
    capped decompressor check uses (a bomb is refused with ModuleReadError, never held)."""
    out = _dec.decompress(data, None, where)
    return out if isinstance(out, bytes) else bytes(out)


def modinfo(elf: bytes, where: str = "module") -> dict[str, list[str]]:
    """The .modinfo key=value pairs of a plain ELF module (keys may repeat). Read with
    modfile's reader: pyelftools alone costs ~0.17 s to import, a tenth of an arm64 boot."""
    try:
        module = ModuleFile(Path(where), elf, None)
    except ModuleReadError as e:
        reason = e.message.removeprefix(f"{where}: ")
        if "no .modinfo" in reason:
            raise ModuleReadError(f"{where} has no .modinfo section") from e
        raise ModuleReadError(f"{where} is not an ELF kernel module: {reason}") from e
    info: dict[str, list[str]] = {}
    for key, value in module.modinfo:
        if value or key:
            info.setdefault(key, []).append(value)
    return info


def depends(info: dict[str, list[str]]) -> list[str]:
    return [d for v in info.get("depends", []) for d in v.split(",") if d]


@dataclass(frozen=True)
class Dep:
    name: str
    path: Path  # the module file in the kernel's tree (maybe compressed)

    def elf(self) -> bytes:
        return decompress(self.path.read_bytes(), str(self.path))


class ModuleTree:
    """Name -> file index of a kernel's module tree (lib/modules/<release>/kernel)."""

    def __init__(self, files: Iterable[Path], release: str = "") -> None:
        self.release = release
        self.files: dict[str, Path] = {}
        for f in files:
            self.files.setdefault(module_name(f), f)

    def resolve(self, wanted: Iterable[str], builtin: Iterable[str] = ()) -> list[Dep]:
        """`wanted` and everything they need, dependencies before dependents.

        Names in `builtin` (modules.builtin) need nothing loaded; others must exist.
        """
        built_in = {module_name(b) for b in builtin}
        order: list[Dep] = []
        state: dict[str, str] = {}  # name -> visiting / done

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = module_name(name)
            if state.get(name) == "done" or name in built_in:
                return
            if state.get(name) == "visiting":
                raise ModuleReadError(f"dependency cycle: {' -> '.join(chain + (name,))}")
            path = self.files.get(name)
            if path is None:
                need = " -> ".join(chain + (name,))
                raise UsageError(
                    f"in-kernel module {name} ({need}) is not in kernel {self.release}",
                    "is the module built for this kernel? check `depends=` in its modinfo",
                )
            state[name] = "visiting"
            for dep in depends(modinfo(decompress(path.read_bytes(), str(path)), str(path))):
                visit(dep, chain + (name,))
            state[name] = "done"
            order.append(Dep(name, path))

        for w in wanted:
            visit(w, ())
        return order


def builtin_names(modules_dir: Path) -> list[str]:
    """Module names listed in modules.builtin (built into the kernel image)."""
    f = modules_dir / "modules.builtin"
    if not f.is_file():
        return []
    return [module_name(line.strip()) for line in f.read_text().splitlines() if line.strip()]
