"""The project tree a build copies, and the paths of one kernel's copy of it.

A build sees the whole project tree, not only the module directory, so that paths out of a
module directory (`-I$(src)/../include`, `#include "../common/x.h"`,
`KBUILD_EXTRA_SYMBOLS := $(src)/../core/Module.symvers`) work on the host and in a
container, where only the copy is mounted. The tree's root is the nearest directory (the
module directory or one of its parents, not past a version-control root) holding a
dkms.conf, else a kmod.toml, else the module directory itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kbuild_py.dkms.conf import CONF_FILE
from kbuild_py.paths import output_dir
from kbuild_py.project.config import PROJECT_FILE

MAX_UP = 4  # parents searched above a module directory
VCS_DIRS = (".git", ".hg", ".svn")


def _ancestors(module_dir: Path) -> list[Path]:
    out = [module_dir]
    for parent in module_dir.parents:
        if len(out) > MAX_UP or any((out[-1] / v).exists() for v in VCS_DIRS):
            break
        out.append(parent)
    return out


def project_root(module_dir: Path) -> Path:
    """The directory whose tree a build of module_dir copies (see the module docstring)."""
    module_dir = Path(module_dir).resolve()
    dirs = _ancestors(module_dir)
    for marker in (CONF_FILE, PROJECT_FILE):
        for d in dirs:
            if (d / marker).is_file():
                return d
    return module_dir


@dataclass(frozen=True)
class CopyLayout:
    """Paths of one kernel's build of one project (all on the host; a container mounts
    `copy` at the same path)."""

    root: Path  # the user's project root
    module_dir: Path  # the user's module directory (M= points at its copy)
    base: Path  # the kernel's directory: root/.kmod-py/<release>/ (build.log)
    copy: Path  # the copy of root: base itself, or base/dkms/<module>/<version>/build

    @property
    def make_dir(self) -> Path:
        return self.copy / self.module_dir.relative_to(self.root)

    @property
    def log_path(self) -> Path:
        return self.base / "build.log"

    @property
    def dkms_tree(self) -> Path:
        """$dkms_tree for dkms.conf: the copy is its <module>/<version>/build, a real
        directory (a `find $dkms_tree/...` in a MAKE line must see the files)."""
        return self.base / DKMS_TREE


DKMS_TREE = "dkms"


def _component(name: str) -> str:
    """A dkms module name or version as one safe path component."""
    safe = name.replace("/", "_").replace("\0", "")
    return safe if safe not in ("", ".", "..") else "_"


def layout_for(
    module_dir: Path, release: str, dkms_name: tuple[str, str] | None = None
) -> CopyLayout:
    """The layout of one kernel's build; with dkms_name (module, version) the copy sits where
    dkms.conf's MAKE lines look for it: $dkms_tree/<module>/<version>/build."""
    module_dir = Path(module_dir).resolve()
    root = project_root(module_dir)
    base = output_dir(root, release)
    copy = base
    if dkms_name is not None:
        copy = base / DKMS_TREE / _component(dkms_name[0]) / _component(dkms_name[1]) / "build"
    return CopyLayout(root=root, module_dir=module_dir, base=base, copy=copy)


def project_root_of(path: Path) -> Path | None:
    """The project root of a path inside a per-kernel copy (the parent of `.kmod-py`)."""
    parts = Path(path).parts
    if ".kmod-py" not in parts:
        return None
    return Path(*parts[: parts.index(".kmod-py")])
