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
    copy: Path  # the per-kernel copy of root: root/.kmod-py/<release>/

    @property
    def make_dir(self) -> Path:
        return self.copy / self.module_dir.relative_to(self.root)

    @property
    def log_path(self) -> Path:
        return self.copy / "build.log"

    @property
    def dkms_tree(self) -> Path:
        return self.copy / ".dkms"

    def dkms_build_dir(self, module: str, version: str) -> Path:
        return self.dkms_tree / module / version / "build"

    def to_user(self, path: Path) -> Path:
        """A path in the copy -> the same file in the user's tree."""
        try:
            return self.root / Path(path).relative_to(self.copy)
        except ValueError:
            return Path(path)


def layout_for(module_dir: Path, release: str) -> CopyLayout:
    module_dir = Path(module_dir).resolve()
    root = project_root(module_dir)
    return CopyLayout(root=root, module_dir=module_dir, copy=output_dir(root, release))
