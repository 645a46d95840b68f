"""The Debian suites and kernel flavours kmod-py knows: what a spec or --suite may name, which
archive suites `debian:SUITE` reads, and what a release's name says (flavour, architecture).
Imports nothing else of kmod-py (kernel specs are parsed with it, without loading the
archive reader).
"""

from __future__ import annotations

import re

SUITES = ("bullseye", "bookworm", "bookworm-backports", "trixie", "trixie-backports", "sid")
# The suite a backports suite builds on (its base image and apt sources).
BASE_SUITE = {
    "bullseye": "bullseye",
    "bookworm": "bookworm",
    "bookworm-backports": "bookworm",
    "trixie": "trixie",
    "trixie-backports": "trixie",
    "sid": "sid",
    "unstable": "sid",
}
# Suites Debian no longer serves from its mirrors (measured: HTTP 404).
UNSERVED = {
    "buster": "buster is archived (archive.debian.org), no longer on Debian's mirrors",
    "bullseye-backports": "bullseye-backports is archived, no longer on Debian's mirrors",
    "stretch": "stretch is archived (archive.debian.org), no longer on Debian's mirrors",
}
# Architectures kmod-py builds for; a kernel flavour is [VARIANT-]ARCH (Debian's names).
ARCHES = ("amd64", "arm64")
FLAVOUR_VARIANTS = ("cloud", "rt")


def dists(suite: str) -> tuple[str, ...]:
    """The archive suites `debian:SUITE` reads: a release suite with its security and point
    updates (where Debian's current kernel of that release lives), else the suite alone."""
    if BASE_SUITE.get(suite) == suite and suite != "sid":
        return (suite, f"{suite}-security", f"{suite}-updates")
    return (suite,)


# A Debian kernel ABI: 6.1.0-57, 6.12.118+deb13, 6.1.0-0.deb11.52, 7.3.4+deb13.1
_ABI = r"\d+\.\d+[^-\s]*(?:-\d[^-\s]*)?"


def release_of(package: str, flavour: str = "amd64") -> str | None:
    """'linux-headers-6.1.0-57-amd64' -> '6.1.0-57-amd64' for flavour amd64; None for other
    flavours (6.1.0-57-cloud-amd64), for metapackages (linux-headers-6.1-amd64) and the rest."""
    m = re.fullmatch(rf"linux-headers-({_ABI})-{re.escape(flavour)}", package)
    if not m or not re.search(r"-\d|\+deb", m.group(1)):
        return None
    return f"{m.group(1)}-{flavour}"


def flavour_of(release: str) -> str:
    """'6.1.0-57-cloud-arm64' -> 'cloud-arm64' (amd64 when it cannot tell)."""
    m = re.fullmatch(rf"{_ABI}-([a-z][a-z0-9-]*)", release)
    return m.group(1) if m else "amd64"


def arch_of(release_or_flavour: str) -> str:
    """The Debian architecture a release or flavour is for (its last part; amd64 default)."""
    last = release_or_flavour.rsplit("-", 1)[-1]
    return last if last in ARCHES else "amd64"
