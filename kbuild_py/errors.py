"""One exception family for everything a user can cause or fix.

The CLI catches KmodError once, prints ``error: <message>`` and ``hint: <hint>``
to stderr and exits with ``exit_code`` (2: unusable input or environment).
"""

from __future__ import annotations


class KmodError(Exception):
    """Base error: a one-line cause and a hint."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(KmodError):
    """Bad user input: a name, an option, a file that is not a module."""


class ProjectError(UsageError):
    """kmod.toml is missing, unreadable or invalid."""


class NoBuildTreeError(KmodError):
    """No kernel build tree where one was expected."""


class ModuleReadError(UsageError):
    """A .ko file could not be read as a kernel module."""


class InfraError(KmodError):
    """The environment is not usable: Docker, QEMU, the mirror, disk."""


class DockerUnavailable(InfraError):
    """The Docker daemon cannot be reached."""


class MirrorError(InfraError):
    """The Debian mirror could not be reached or does not know a package."""


class VerificationError(MirrorError):
    """What a mirror sent did not verify: signature, hash, size, suite or Valid-Until."""


class ExpiredReleaseError(VerificationError):
    """A correctly signed Release past its Valid-Until: never used, but a search over several
    suites may skip that suite (with a note) instead of giving up."""
