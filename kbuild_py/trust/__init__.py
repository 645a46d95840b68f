"""Authenticating what kmod-py downloads from a Debian archive, the way apt does.

The chain of trust, every link checked before the next is used:

1. ``dists/SUITE/InRelease`` (or ``Release`` + ``Release.gpg``) carries a good OpenPGP
   signature from a key in Debian's archive keyring (``gpgv`` against
   /usr/share/keyrings/debian-archive-keyring.gpg: release.py, gpgv.py); it names the suite
   asked for, is not dated in the future and, when it has ``Valid-Until``, has not expired.
2. Each index (``main/binary-amd64/Packages.xz``) has the size and SHA256 the Release lists
   (hashes.py, archive.py).
3. Each ``.deb`` has the size and SHA256 its Packages stanza lists; a stanza without a
   SHA256 is refused (packages.py, archive.py).

Cached copies are checked again the same way before they are used. Downloads go through one
small HTTP seam (kbuild_py.seams.http) so unit tests need no network.
"""
