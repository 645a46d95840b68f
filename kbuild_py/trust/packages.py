"""Stanzas of a Packages index (deb822, read with python-debian), and what a .deb must match.

A suite's Packages file holds ~60,000 stanzas; python-debian parses all of them in ~6 s, so
only stanzas whose first line names a wanted package are handed to it (~0.2 s). The index
itself was verified against the signed Release before it gets here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from kbuild_py.errors import VerificationError
from kbuild_py.trust.hashes import Digest

_FIRST = re.compile(r"Package: *(\S+)")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str  # pool/main/l/linux-signed-amd64/linux-image-…_amd64.deb
    depends: str
    sha256: str  # "" when the stanza had none: such a package is refused at download
    size: int

    def digest(self) -> Digest:
        return Digest.parse(self.sha256, self.size, f"package {self.name} {self.version}")

    def pool_path(self) -> PurePosixPath:
        """Filename as a path below the archive root; anything that could leave it is refused."""
        p = PurePosixPath(self.filename)
        if (not self.filename or p.is_absolute() or ".." in p.parts or "\\" in self.filename
                or not p.name.endswith(".deb") or any(c in self.filename for c in "?#%\0\n")):
            raise VerificationError(
                f"package {self.name}: unusable Filename {self.filename[:80]!r} in the index")
        return p


def parse_packages(text: str, wanted: re.Pattern[str]) -> dict[str, list[Package]]:
    """Every stanza whose package name `wanted` matches (from the start), by name."""
    # Imported here: python-debian costs ~130 ms, and `kmod-py check` never needs it.
    from debian.deb822 import Packages as Deb822Packages

    out: dict[str, list[Package]] = {}
    for stanza in re.split(r"\n[ \t]*\n", text):
        stanza = stanza.lstrip("\n")
        m = _FIRST.match(stanza)
        if not m or not wanted.match(m.group(1)):
            continue
        fields = Deb822Packages(stanza)
        name = fields.get("Package", "")
        try:
            size = int(fields.get("Size", "-1"))
        except ValueError:
            size = -1
        pkg = Package(
            name=name,
            version=fields.get("Version", ""),
            filename=fields.get("Filename", ""),
            depends=fields.get("Depends", ""),
            sha256=fields.get("SHA256", "").strip().lower(),
            size=size,
        )
        out.setdefault(pkg.name, []).append(pkg)
    return out
