"""The Debian suites kmod-py knows: what a spec or --suite may name. Imports nothing else of
kmod-py (kernel specs are parsed with it, without loading the archive reader).
"""

from __future__ import annotations

SUITES = ("bookworm", "bookworm-backports", "trixie", "trixie-backports", "sid")
# The suite a backports suite builds on (its base image and apt sources).
BASE_SUITE = {
    "bookworm": "bookworm",
    "bookworm-backports": "bookworm",
    "trixie": "trixie",
    "trixie-backports": "trixie",
    "sid": "sid",
    "unstable": "sid",
}
